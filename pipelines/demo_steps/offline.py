"""The demo's offline steps 1-5, on the path a real recording takes (it carries no progress
annotation): synthesize, record which episodes succeeded, learn a value from those outcomes
alone (RECAP), score and label every frame (checked against labels from the simulator's true
progress), then AWBC against plain BC on the same seeds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pipelines import evaluation, labeling, recap, synthesis
from pipelines.classifier.labels import success_csv_path
from pipelines.dataset import LeRobotDataset, atomic_write_text
from pipelines.demo_steps.state import Demo
from pipelines.estimator import inference, training
from pipelines.estimator.config import EstimateConfig, EstimatorTrainConfig
from pipelines.policy import training as policy_training
from pipelines.policy.config import PolicyTrainConfig
from pipelines.recap.outcomes import report_lines
from pipelines.runtime.schedule import split_episodes

AFTER_SUCCESS = 10  # frames recorded after each success: what the reward classifier learns
IMAGE_SIZE = 64  # synth's frames and every model's input but the policies'
THRESHOLD = 30.0  # RECAP's share of positive frames per task, in %


def silent(*_args, **_kwargs) -> None:
    """An `out` for the stages' own progress lines: the demo prints its own."""


def episode_labels(dataset: Path, data_dir: str) -> dict[int, np.ndarray]:
    """Every episode's `task_index` column (its labels) in `data_dir`."""
    ds = LeRobotDataset(dataset)
    return {
        e: ds.read_episode(e, ["task_index"], data_dir)["task_index"].to_numpy()
        for e in ds.episode_indices
    }


def positive_share(labels: dict[int, np.ndarray], episodes: list[dict]) -> dict[str, float]:
    """Share of frames labeled positive (odd task_index), per controller that made them."""
    by: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        by.setdefault(ep["controller"], []).append(labels[ep["episode_index"]] % 2)
    return {name: float(np.concatenate(v).mean()) for name, v in sorted(by.items())}


def labeling_config(d: Demo, **changes) -> labeling.LabelConfig:
    c = d.config
    return labeling.LabelConfig(
        dataset=str(d.dataset),
        threshold=THRESHOLD,
        ray_address=c.ray_address,
        mlflow=c.mlflow,
        **changes,
    )


def synthesize(d: Demo) -> str:
    c = d.config
    success_csv_path(d.dataset).unlink(missing_ok=True)
    print(f"  {c.episodes} episodes ({c.mix}) as Ray tasks -> {d.dataset}")
    made = synthesis.run(
        synthesis.SynthConfig(
            out=str(d.dataset),
            episodes=c.episodes,
            seed=c.seed,
            mix=c.mix,
            steps_after_success=AFTER_SUCCESS,
            image_size=IMAGE_SIZE,
            ray_address=c.ray_address,
        ),
        out=silent,
    )
    print(f"  {len(made.episodes)} episodes, {made.frames} frames in {made.seconds:.1f} s")
    for line in synthesis.summary_lines(made):
        print(line)
    episodes = [
        {k: ep[k] for k in ("episode_index", "controller", "success")} for ep in made.episodes
    ]
    d.record(1, episodes=episodes, frames=made.frames)
    return f"{len(made.episodes)} episodes, {made.frames} frames"


def record_outcomes(d: Demo) -> str:
    """What a user does with a recording: note which episodes succeeded (here from the
    simulator), as a CSV, and write it into the dataset (`flywheel outcomes --from csv:`)."""
    episodes = d.need(1)["episodes"]
    path = d.outcomes_csv
    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(["episode_index", "success"])
    rows.writerows((ep["episode_index"], int(ep["success"])) for ep in episodes)
    atomic_write_text(path, text.getvalue())
    print(f"  which episodes succeeded, one line each -> {path}")
    result = recap.run(recap.OutcomesConfig(dataset=str(d.dataset), source=f"csv:{path}"))
    for line in report_lines(result)[1:]:
        print(f"  {line}")
    successes = sum(bool(ok) for ok in result.outcomes.values())
    d.record(2, csv=str(path), successes=successes, episodes=len(result.outcomes))
    return f"{successes} of {len(result.outcomes)} episodes succeeded"


def train_the_value(d: Demo) -> str:
    d.need(2)
    c = d.config
    print(
        f"  {c.steps} steps on 2 Ray Train workers: from each frame (cameras, arm state, task "
        "text), how many steps are left to a success, a failure counting as far away"
    )
    trained = training.run(
        EstimatorTrainConfig.from_flags(
            dataset=str(d.dataset),
            variant="recap",
            workers=2,
            steps=c.steps,
            batch_size=16,
            image_size=IMAGE_SIZE,
            checkpoint_every=max(1, c.steps // 3),
            storage=str(d.runs),
            name="demo-value",
            seed=c.seed,
            ray_address=c.ray_address,
            mlflow=c.mlflow,
        )
    )
    m = trained.metrics
    rho = m.get("eval_spearman_success", float("nan"))
    auroc = m.get("eval_auroc_midpoint", float("nan"))
    print(
        f"  step {trained.step} ({trained.seconds:.0f} s), checkpoint {trained.checkpoint}; on "
        f"held-out episodes: Spearman {rho:.2f} of the value with the steps to success "
        f"(successful episodes), AUROC {auroc:.2f} telling successes from failures by the value "
        "at their midpoints"
    )
    d.record(3, checkpoint=str(trained.checkpoint), spearman=rho, auroc=auroc)
    return f"held-out Spearman {rho:.2f}, AUROC {auroc:.2f}"


def estimate_and_label(d: Demo) -> str:
    """Stage 2 and Stage 0: every frame's value and advantage, the top 30 % per task labeled
    positive (interventions always); checked against labels from true progress."""
    episodes = d.need(1)["episodes"]
    trained = d.need(3)
    c = d.config
    print("  every frame through the value model (Ray Data): A = how much closer N steps bring")
    est = inference.run(
        EstimateConfig(
            dataset=str(d.dataset), checkpoint=trained["checkpoint"], ray_address=c.ray_address
        )
    )
    print(f"  {est.frames} frames in {est.seconds:.1f} s -> {est.out_dir}")
    data_dir = est.out_dir.name
    labeling.run(
        labeling_config(
            d,
            data_dir=data_dir,
            advantage_source="absolute_advantage",
            per_task_threshold=True,
            intervention_positive=True,
        ),
        out=silent,
    )
    estimated = episode_labels(d.dataset, data_dir)
    shares = positive_share(estimated, episodes)
    print(
        f"  labeled the top {THRESHOLD:.0f}% of each task's frames positive (frames where the "
        "operator took over too); positive share by the controller that made them: "
        + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    )
    # the check: the simulator knows every frame's true progress; a recording would not
    labeling.run(labeling_config(d), out=silent)
    truth = episode_labels(d.dataset, "data")
    _, held = split_episodes(sorted(truth), 0.2, c.seed)
    agree = float(np.mean(np.concatenate([truth[e] == estimated[e] for e in truth])))
    agree_held = float(np.mean(np.concatenate([truth[e] == estimated[e] for e in held])))
    print(
        f"  check: these labels agree with labels from the simulator's true progress on "
        f"{agree:.1%} of frames ({agree_held:.1%} on the value model's {len(held)} held-out "
        "episodes)"
    )
    d.record(4, data_dir=data_dir, shares=shares, agreement=agree, agreement_held_out=agree_held)
    return f"{est.frames} frames; labels agree with true progress on {agree:.0%}"


def awbc_against_bc(d: Demo) -> str:
    """Stage 3: AWBC (the labels of step 4) and plain BC, trained alike, on the same seeds."""
    data_dir = d.need(4)["data_dir"]
    c = d.config
    print(
        f"  AWBC (told which frames were good, asked for good ones) and plain BC (imitates "
        f"everything), {c.policy_steps} steps of {c.policy_batch_size} frames each at "
        f"{c.policy_image_size} px (one Ray Train worker), then {c.eval_episodes} simulated "
        "episodes each on the same seeds"
    )
    checkpoints = {}
    for arm, conditioning in (("awbc", "prompt"), ("bc", "none")):
        trained = policy_training.run(
            PolicyTrainConfig.from_flags(
                dataset=str(d.dataset),
                data_dir=data_dir,
                conditioning=conditioning,
                steps=c.policy_steps,
                workers=1,  # one worker of 64 frames a step beats two of 32 on 2 cores
                batch_size=c.policy_batch_size,
                image_size=c.policy_image_size,
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
