"""The demo's offline steps 1-5: synthesize, label from progress, train the estimator, estimate
and relabel, then AWBC against plain BC on the same seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines import evaluation, labeling, synthesis
from pipelines.classifier.labels import success_csv_path
from pipelines.dataset import LeRobotDataset
from pipelines.demo_steps.state import Demo
from pipelines.estimator import inference, training
from pipelines.estimator.config import EstimateConfig, EstimatorTrainConfig
from pipelines.policy import training as policy_training
from pipelines.policy.config import PolicyTrainConfig
from pipelines.runtime.schedule import split_episodes

AFTER_SUCCESS = 10  # frames recorded after each success: what the reward classifier learns
IMAGE_SIZE = 64  # synth's frames and every model's input


def silent(*_args, **_kwargs) -> None:
    """An `out` for the stages' own progress lines: the demo prints its own."""


def positive_share(dataset: Path, episodes: list[dict]) -> dict[str, float]:
    """Share of frames labeled positive, per controller that made the episodes."""
    ds = LeRobotDataset(dataset)
    by: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        ti = ds.read_episode(ep["episode_index"], ["task_index"])["task_index"].to_numpy()
        by.setdefault(ep["controller"], []).append(ti % 2)
    return {name: float(np.concatenate(v).mean()) for name, v in sorted(by.items())}


def episode_labels(dataset: Path, data_dir: str) -> dict[int, np.ndarray]:
    """Every episode's `task_index` column in `data_dir`."""
    ds = LeRobotDataset(dataset)
    return {
        e: ds.read_episode(e, ["task_index"], data_dir)["task_index"].to_numpy()
        for e in ds.episode_indices
    }


def labeling_config(d: Demo, **changes) -> labeling.LabelConfig:
    c = d.config
    return labeling.LabelConfig(
        dataset=str(d.dataset),
        threshold=30.0,
        ray_address=c.ray_address,
        mlflow=c.mlflow,
        **changes,
    )


def synthesize(d: Demo) -> str:
    c = d.config
    success_csv_path(d.dataset).unlink(missing_ok=True)
    print(f"  {c.episodes} episodes as Ray tasks -> {d.dataset}")
    made = synthesis.run(
        synthesis.SynthConfig(
            out=str(d.dataset),
            episodes=c.episodes,
            seed=c.seed,
            steps_after_success=AFTER_SUCCESS,
            image_size=IMAGE_SIZE,
            ray_address=c.ray_address,
        )
    )
    print(f"  {len(made.episodes)} episodes, {made.frames} frames in {made.seconds:.1f} s")
    for line in synthesis.summary_lines(made):
        print(line)
    d.record(1, episodes=made.episodes, frames=made.frames)
    return f"{len(made.episodes)} episodes, {made.frames} frames"


def label_from_progress(d: Demo) -> str:
    made = d.need(1)
    result = labeling.run(labeling_config(d), out=silent)
    print(f"  labeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s)")
    for i, text in enumerate(result.task_texts):
        print(f"  task_index={i} {text!r}: {result.counts[i]} frames")
    shares = positive_share(d.dataset, made["episodes"])
    print("  positive share by controller: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    if result.mlflow_run:
        print(f"  {result.mlflow_run}")
    counts = {int(k): int(v) for k, v in result.counts.items()}
    d.record(2, counts=counts)
    return f"{counts.get(1, 0) / max(1, sum(counts.values())):.0%} of frames positive"


def train_the_estimator(d: Demo) -> str:
    d.need(2)
    c = d.config
    print(f"  {c.steps} steps, 2 Ray Train workers")
    trained = training.run(
        EstimatorTrainConfig.from_flags(
            dataset=str(d.dataset),
            variant="kai0",
            workers=2,
            steps=c.steps,
            batch_size=16,
            image_size=IMAGE_SIZE,
            checkpoint_every=max(1, c.steps // 3),
            storage=str(d.runs),
            name="demo-estimator",
            seed=c.seed,
            ray_address=c.ray_address,
            mlflow=c.mlflow,
        )
    )
    m = trained.metrics
    rho = m.get("eval_spearman", float("nan"))
    print(
        f"  step {trained.step}, loss {m.get('loss', float('nan')):.4f}, held-out "
        f"Spearman(value, stage progress) {rho:.3f} ({trained.seconds:.0f} s); "
        f"checkpoint {trained.checkpoint}"
    )
    d.record(3, checkpoint=str(trained.checkpoint), spearman=rho)
    return f"held-out Spearman {rho:.3f}"


def estimate_and_relabel(d: Demo) -> str:
    trained = d.need(3)
    c = d.config
    print("  every frame through the estimator (Ray Data)")
    est = inference.run(
        EstimateConfig(
            dataset=str(d.dataset), checkpoint=trained["checkpoint"], ray_address=c.ray_address
        )
    )
    print(f"  {est.frames} frames in {est.seconds:.1f} s -> {est.out_dir}")
    print("  Stage 0 from the estimate (absolute_advantage, top 30% positive)")
    truth = episode_labels(d.dataset, "data")
    config = labeling_config(d, data_dir=est.out_dir.name, advantage_source="absolute_advantage")
    labeling.run(config, out=silent)
    estimated = episode_labels(d.dataset, est.out_dir.name)
    _, held = split_episodes(LeRobotDataset(d.dataset).episode_indices, 0.2, c.seed)
    agree = float(np.mean(np.concatenate([truth[e] == estimated[e] for e in truth])))
    agree_held = float(np.mean(np.concatenate([truth[e] == estimated[e] for e in held])))
    print(
        f"  labels from the estimate agree with labels from true progress on {agree:.1%} of "
        f"frames ({agree_held:.1%} on the {len(held)} held-out episodes)"
    )
    d.record(4, data_dir=est.out_dir.name, agreement=agree, agreement_held_out=agree_held)
    return f"{est.frames} frames; labels agree with the truth on {agree:.0%}"


def awbc_against_bc(d: Demo) -> str:
    """Stage 3: AWBC (estimated labels) and plain BC, trained alike, scored on the same seeds."""
    data_dir = d.need(4)["data_dir"]
    c = d.config
    print(
        f"  AWBC (prompts from the estimated labels) and plain BC, {c.policy_steps} steps each "
        f"on 2 Ray Train workers, then {c.eval_episodes} simulated episodes each on the same seeds"
    )
    checkpoints = {}
    for arm, conditioning in (("awbc", "prompt"), ("bc", "none")):
        trained = policy_training.run(
            PolicyTrainConfig.from_flags(
                dataset=str(d.dataset),
                data_dir=data_dir,
                conditioning=conditioning,
                steps=c.policy_steps,
                checkpoint_every=c.policy_steps,
                storage=str(d.runs),
                name=f"demo-{arm}",
                seed=c.seed,
                ray_address=c.ray_address,
                mlflow=c.mlflow,
            )
        )
        checkpoints[arm] = str(trained.checkpoint)
        print(
            f"  {arm}: step {trained.step}, L1 {trained.metrics.get('l1', float('nan')):.3f} "
            f"({trained.seconds:.0f} s)"
        )
    result = evaluation.run(
        evaluation.EvalConfig(
            checkpoint=checkpoints["bc"],
            prompt="none",
            name="bc",
            compare=[f"{checkpoints['awbc']}#prompt=positive#name=awbc (positive prompt)"],
            episodes=c.eval_episodes,
            seed=c.seed,
            ray_address=c.ray_address,
            mlflow=c.mlflow,
        )
    )
    for line in evaluation.summary_lines(result):
        print(line)
    rates = {arm.name: arm.summary()["success_rate"] for arm in result.arms}
    d.record(5, checkpoints=checkpoints, success_rates=rates)
    return ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items()) + " success"
