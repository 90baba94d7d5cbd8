"""`flywheel demo`: the flywheel end to end on a small simulated dataset, on a local Ray cluster.

1. synthesize SO-101 episodes in the simulator (`flywheel synth`);
2. Stage 0: label them from the simulator's progress (`flywheel label`) and show where the
   positive labels went;
3. Stage 1: train a small advantage estimator on Ray Train (`flywheel train-estimator`);
4. Stage 2: estimate every frame's advantage on Ray Data (`flywheel estimate`);
5. Stage 0 again, from the estimate: how often it agrees with the labels from true progress;
6. Stage 3: train an AWBC policy on the estimate's labels and a plain BC policy on the same
   frames (`flywheel train-policy`, a short budget), and roll both out in the simulator on the
   same seeds (`flywheel eval-policy`).
7. the reward classifier: trained on the episodes' success frames (`flywheel train-classifier`,
   Ray Train), served (`flywheel serve-reward`, Ray Serve) and asked over HTTP about every frame
   of the held-out test episodes, by four robots at once.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines import estimate, label, synth, train_estimator
from pipelines.classifier.labels import success_csv_path
from pipelines.cluster import ClusterError
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.policy import evaluate as eval_policy
from pipelines.policy import train as train_policy
from pipelines.tracking import TrackingError, check_tracking_uri

AFTER_SUCCESS = 10  # frames recorded after each success: what the reward classifier learns


def positive_share(dataset: Path, episodes: list[dict]) -> dict[str, float]:
    """Share of frames labeled positive, per controller that made the episodes."""
    ds = LeRobotDataset(dataset)
    by: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        ti = ds.read_episode(ep["episode_index"], ["task_index"])["task_index"].to_numpy()
        by.setdefault(ep["controller"], []).append(ti % 2)
    return {name: float(np.concatenate(v).mean()) for name, v in sorted(by.items())}


def main(argv: Sequence[str] | None = None, prog: str = "flywheel demo") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="flywheel-demo", help="output folder (default flywheel-demo)")
    p.add_argument("--episodes", type=int, default=40, help="episodes to simulate (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150, help="estimator training steps (150)")
    p.add_argument(
        "--classifier-steps", type=int, default=60, help="reward classifier training steps (60)"
    )
    p.add_argument("--policy-steps", type=int, default=300, help="policy training steps (300)")
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per policy (20)")
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    dataset = out / "dataset"
    try:
        if not args.no_mlflow:
            check_tracking_uri()
        for old in (dataset, out / "runs"):  # the demo's own output from an earlier run
            if old.exists():
                shutil.rmtree(old)
        success_csv_path(dataset).unlink(missing_ok=True)
        print(f"[1/7] synthesizing {args.episodes} SO-101 episodes in the simulator -> {dataset}")
        made = synth.run(
            synth.SynthConfig(
                out=str(dataset),
                episodes=args.episodes,
                seed=args.seed,
                steps_after_success=AFTER_SUCCESS,
                ray_address=args.ray_address,
            )
        )
        n = len(made.episodes)
        print(f"  {n} episodes, {made.frames} frames in {made.seconds:.1f} s")
        for line in synth.summary_lines(made):
            print(line)

        print("[2/7] Stage 0: labeling from progress (binary, top 30% positive)")
        labeling = dict(
            dataset=str(dataset),
            threshold=30.0,
            ray_address=args.ray_address,
            mlflow=not args.no_mlflow,
        )
        result = label.run(label.LabelConfig(**labeling), out=lambda *a: None)
        print(f"  labeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s)")
        for i, text in enumerate(result.task_texts):
            print(f"  task_index={i} {text!r}: {result.counts[i]} frames")
        shares = positive_share(dataset, made.episodes)
        print(
            "  positive share by controller: "
            + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        )
        if result.mlflow_run:
            print(f"  {result.mlflow_run}")

        print(
            f"[3/7] Stage 1: training the kai0 advantage estimator ({args.steps} steps, "
            "2 Ray Train workers)"
        )
        trained = train_estimator.run(
            train_estimator.TrainConfig(
                dataset=str(dataset),
                variant="kai0",
                workers=2,
                steps=args.steps,
                batch_size=16,
                checkpoint_every=max(1, args.steps // 3),
                storage=str(out / "runs"),
                name="demo-estimator",
                seed=args.seed,
                ray_address=args.ray_address,
                mlflow=not args.no_mlflow,
            )
        )
        m = trained.metrics
        print(
            f"  step {trained.step}, loss {m.get('loss', float('nan')):.4f}, held-out "
            f"Spearman(value, stage progress) {m.get('eval_spearman', float('nan')):.3f} "
            f"({trained.seconds:.0f} s); checkpoint {trained.checkpoint}"
        )

        print("[4/7] Stage 2: estimating every frame's advantage (Ray Data)")
        est = estimate.run(
            estimate.EstimateConfig(
                dataset=str(dataset),
                checkpoint=trained.checkpoint,
                ray_address=args.ray_address,
            )
        )
        print(f"  {est.frames} frames in {est.seconds:.1f} s -> {est.out_dir}")

        print("[5/7] Stage 0 from the estimate (absolute_advantage, top 30% positive)")
        truth = _labels(dataset, "data")
        label.run(
            label.LabelConfig(
                **labeling, data_dir=est.out_dir.name, advantage_source="absolute_advantage"
            ),
            out=lambda *a: None,
        )
        estimated = _labels(dataset, est.out_dir.name)
        from pipelines.estimator_data import split_episodes

        _, held = split_episodes(LeRobotDataset(dataset).episode_indices, 0.2, args.seed)
        agree = np.mean(np.concatenate([truth[e] == estimated[e] for e in truth]))
        agree_held = np.mean(np.concatenate([truth[e] == estimated[e] for e in held]))
        print(
            f"  labels from the estimate agree with labels from true progress on {agree:.1%} of "
            f"frames ({agree_held:.1%} on the {len(held)} held-out episodes)"
        )
        policies(dataset, est.out_dir.name, out / "runs", args)
    except (DatasetError, ClusterError, TrackingError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(
        f"[7/7] the reward classifier: train ({args.classifier_steps} steps, Ray Train), serve "
        "(Ray Serve), score held-out frames over HTTP"
    )
    try:
        scored = reward_classifier_step(
            dataset,
            out / "runs",
            steps=args.classifier_steps,
            seed=args.seed,
            ray_address=args.ray_address,
            mlflow=not args.no_mlflow,
        )
    except (DatasetError, ClusterError, TrackingError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    t = scored["training"]
    print(
        f"  trained in {t.seconds:.0f} s, threshold {t.threshold:.3f} ({t.threshold_rule}); "
        f"checkpoint {t.checkpoint}"
    )
    print(
        f"  served at {scored['url']}: {scored['frames']} frames of {scored['episodes']} held-out "
        f"episodes scored over HTTP in {scored['seconds']:.1f} s by 4 robots at once"
    )
    m = scored["metrics"]
    print(
        f"  accuracy {m['accuracy']:.2%} (precision {m['precision']:.2%}, recall "
        f"{m['recall']:.2%}; {m['tp'] + m['fn']} success frames)"
    )
    print(f"Results: {dataset.resolve()}")
    return 0


def policies(dataset: Path, data_dir: str, storage: Path, args) -> dict[str, float]:
    """Stage 3: AWBC (estimated labels) and plain BC, trained alike, scored on the same seeds."""
    print(
        f"[6/7] Stage 3: training AWBC (prompts from the estimated labels) and plain BC "
        f"({args.policy_steps} steps each, 2 Ray Train workers), then {args.eval_episodes} "
        "simulated episodes each on the same seeds"
    )
    checkpoints = {}
    for arm, conditioning in (("awbc", "prompt"), ("bc", "none")):
        trained = train_policy.run(
            train_policy.TrainPolicyConfig(
                dataset=str(dataset),
                data_dir=data_dir,
                conditioning=conditioning,
                steps=args.policy_steps,
                checkpoint_every=args.policy_steps,
                storage=str(storage),
                name=f"demo-{arm}",
                seed=args.seed,
                ray_address=args.ray_address,
                mlflow=not args.no_mlflow,
            )
        )
        checkpoints[arm] = trained.checkpoint
        print(
            f"  {arm}: step {trained.step}, L1 {trained.metrics.get('l1', float('nan')):.3f} "
            f"({trained.seconds:.0f} s)"
        )
    result = eval_policy.run(
        eval_policy.EvalConfig(
            checkpoint=checkpoints["bc"],
            prompt="none",
            name="bc",
            compare=[f"{checkpoints['awbc']}#prompt=positive#name=awbc (positive prompt)"],
            episodes=args.eval_episodes,
            seed=args.seed,
            ray_address=args.ray_address,
            mlflow=not args.no_mlflow,
        )
    )
    for line in eval_policy.summary_lines(result):
        print(line)
    return {a.name: a.summary()["success_rate"] for a in result.arms}


def reward_classifier_step(
    dataset: Path,
    storage: Path,
    *,
    steps: int,
    seed: int = 0,
    ray_address: str | None = None,
    mlflow: bool = True,
    robots: int = 4,
) -> dict:
    """Train the reward classifier on `dataset` (its success-frames CSV), serve it on a free
    port, and score every frame of its held-out test episodes over HTTP from `robots` threads;
    returns the training result, the metrics and what was scored. Serve is shut down after."""
    import socket
    import threading
    import time

    from ray import serve

    from pipelines.classifier.data import load_frames
    from pipelines.classifier.labels import read_success_csv
    from pipelines.classifier.metrics import binary_metrics
    from pipelines.classifier.train import TrainConfig
    from pipelines.classifier.train import run as train_classifier
    from pipelines.training import read_meta
    from serving.client import HTTPRewardClient
    from serving.reward import ServeConfig, serve_reward

    csv = success_csv_path(dataset)
    trained = train_classifier(
        TrainConfig(
            dataset=str(dataset),
            labels=str(csv),
            workers=2,
            steps=steps,
            batch_size=16,
            checkpoint_every=steps,
            storage=str(storage),
            name="demo-classifier",
            seed=seed,
            ray_address=ray_address,
            mlflow=mlflow,
        )
    )
    meta = read_meta(trained.checkpoint, "classifier")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve_reward(ServeConfig(checkpoint=trained.checkpoint, port=port, ray_address=ray_address))
    url = f"http://127.0.0.1:{port}/reward"
    try:
        ds = LeRobotDataset(dataset)
        labels = read_success_csv(csv)
        cameras = meta["model"]["cameras"]
        frames = [
            (f.labels[i], {c: f.images[i, k] for k, c in enumerate(cameras)})
            for e in meta["test_episodes"]
            for f in [load_frames(ds, labels[e], cameras, meta["model"]["image_size"])]
            for i in range(len(f))
        ]
        answers: list = [None] * len(frames)
        failures: list = []

        def robot(r: int) -> None:
            client = HTTPRewardClient(url)
            try:
                for i in range(r, len(frames), robots):
                    answers[i] = client.score(frames[i][1])["probability"]
            except Exception as e:  # reported by the caller, in one line
                failures.append(e)

        t0 = time.time()
        threads = [threading.Thread(target=robot, args=(r,)) for r in range(robots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - t0
    finally:
        serve.shutdown()
    if failures:
        raise ValueError(f"{url}: {type(failures[0]).__name__}: {failures[0]}")
    truth = np.array([y for y, _ in frames])
    metrics = binary_metrics(np.array(answers), truth, trained.threshold)
    return {
        "training": trained,
        "url": url,
        "frames": len(frames),
        "episodes": len(meta["test_episodes"]),
        "seconds": seconds,
        "metrics": metrics,
    }


def _labels(dataset: Path, data_dir: str) -> dict[int, np.ndarray]:
    ds = LeRobotDataset(dataset)
    return {
        e: ds.read_episode(e, ["task_index"], data_dir)["task_index"].to_numpy()
        for e in ds.episode_indices
    }


if __name__ == "__main__":
    from pipelines.cluster import exit_process

    exit_process(main(prog="python -m pipelines.demo"))
