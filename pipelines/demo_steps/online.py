"""The demo's online steps 6-8: the reward classifier trained, served (Ray Serve) and asked over
HTTP by four robots at once; HIL-SERL with that served classifier as its reward; a Ray Tune
sweep over the classifier's decision threshold."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
from ray import serve

from actors import hilserl
from pipelines import sweeps
from pipelines.classifier.config import KIND as CLASSIFIER
from pipelines.classifier.config import ClassifierTrainConfig
from pipelines.classifier.data import load_frames
from pipelines.classifier.labels import read_success_csv, success_csv_path
from pipelines.classifier.metrics import binary_metrics
from pipelines.classifier.training import run as train_classifier
from pipelines.dataset import LeRobotDataset
from pipelines.demo_steps.offline import IMAGE_SIZE, silent
from pipelines.demo_steps.state import Demo, DemoError
from pipelines.runtime.checkpoints import read_meta
from serving import HTTPRewardClient, RewardAppConfig, ServeConfig, serve_reward

SWEEP_THRESHOLDS = [0.3, 0.5, 0.7]


def free_port() -> int:
    """A free local port (8000 may be another job's on a shared machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    csv = success_csv_path(dataset)
    trained = train_classifier(
        ClassifierTrainConfig.from_flags(
            dataset=str(dataset),
            labels=str(csv),
            workers=2,
            steps=steps,
            batch_size=16,
            image_size=IMAGE_SIZE,
            checkpoint_every=steps,
            storage=str(storage),
            name="demo-classifier",
            seed=seed,
            ray_address=ray_address,
            mlflow=mlflow,
        )
    )
    meta = read_meta(trained.checkpoint, CLASSIFIER)
    port = free_port()
    serve_reward(
        ServeConfig(RewardAppConfig(trained.checkpoint), port=port, ray_address=ray_address)
    )
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


def reward_classifier(d: Demo) -> str:
    d.need(1)
    c = d.config
    print(
        f"  train ({c.classifier_steps} steps, Ray Train), serve (Ray Serve), score the held-out "
        "frames over HTTP"
    )
    try:
        scored = reward_classifier_step(
            d.dataset,
            d.runs,
            steps=c.classifier_steps,
            seed=c.seed,
            ray_address=c.ray_address,
            mlflow=c.mlflow,
        )
    except ValueError as e:
        raise DemoError(str(e)) from e
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
    d.record(6, checkpoint=str(t.checkpoint), threshold=t.threshold, accuracy=m["accuracy"])
    return f"held-out accuracy {m['accuracy']:.1%} over HTTP"


def window(episodes: int) -> int:
    """Episodes at each end over which the intervention rate is compared (10, fewer if short)."""
    return max(1, min(10, episodes // 3))


def intervention_rates(episodes: list[dict]) -> tuple[float, float]:
    """Intervened steps / steps over the first and the last `window` episodes."""
    n = window(len(episodes))

    def rate(part: list[dict]) -> float:
        return sum(e["intervention_steps"] for e in part) / max(1, sum(e["length"] for e in part))

    return rate(episodes[:n]), rate(episodes[-n:])


def hilserl_with_served_reward(d: Demo) -> str:
    """HIL-SERL with the step-6 classifier served as the reward, the simulated operator on."""
    clf = d.need(6)
    value_model = d.need(3)["checkpoint"]
    c = d.config
    print(
        f"  {c.hilserl_steps} env steps in the simulator, 1 collector, the simulated operator; "
        "reward and episode ends from the served classifier (Ray Serve, through its handle); "
        "the step-3 value model's image encoder frozen under the actor and critic"
    )
    serve_reward(
        ServeConfig(
            RewardAppConfig(checkpoint=clf["checkpoint"], num_cpus=0, threads=1),
            port=free_port(),
            ray_address=c.ray_address,
        )
    )
    try:
        result = hilserl.run(
            hilserl.HilserlConfig.from_flags(
                encoder=f"frozen:{value_model}",
                reward="classifier",
                success_frames=3,
                steps=c.hilserl_steps,
                checkpoint_every=c.hilserl_steps,
                name="demo-hilserl",
                storage=str(d.runs),
                seed=c.seed,
                ray_address=c.ray_address,
                mlflow=c.mlflow,
            )
        )
    finally:
        serve.shutdown()
    episodes = result.history.get("episodes", [])
    if len(episodes) < 2:
        raise DemoError(f"{result.run_dir}: HIL-SERL ran {len(episodes)} episode(s); rerun step 7")
    first, last = intervention_rates(episodes)
    n = window(len(episodes))
    successes = sum(bool(e["success"]) for e in episodes[-n:])
    print(
        f"  {len(episodes)} episodes: intervention rate {first:.0%} over the first {n}, "
        f"{last:.0%} over the last {n} ({successes}/{n} of those succeeded, operator included)"
    )
    print(f"  checkpoint {result.checkpoint}; learning curves in {result.run_dir}")
    d.record(
        7,
        checkpoint=str(result.checkpoint),
        episodes=len(episodes),
        intervention_first=first,
        intervention_last=last,
    )
    return f"interventions {first:.0%} -> {last:.0%} ({len(episodes)} episodes)"


def threshold_sweep(d: Demo) -> str:
    """Ray Tune over the classifier's decision threshold, scored on its held-out frames."""
    clf = d.need(6)
    c = d.config
    print(
        f"  {len(SWEEP_THRESHOLDS)} trials (threshold {', '.join(map(str, SWEEP_THRESHOLDS))}) "
        "on the classifier's held-out frames; metric F1"
    )
    result = sweeps.run(
        sweeps.SweepConfig(
            kind="reward-threshold",
            inputs=[clf["checkpoint"], str(d.dataset)],
            space={"threshold": list(SWEEP_THRESHOLDS)},
            name="demo-sweep",
            storage=str(d.runs),
            ray_address=c.ray_address,
            mlflow=c.mlflow,
        ),
        out=silent,
    )
    print(sweeps.results_table(result.kind, result.rows))
    print(f"  table {result.csv_path}, plot {result.png_path}")
    best = sweeps.best_row(result.rows, result.kind.metric)
    if best is None:
        raise DemoError(f"{result.folder}: no trial finished; rerun step 8")
    d.record(8, best=best.params, f1=best.metrics.get("f1"), csv=str(result.csv_path))
    return f"best threshold {best.params['threshold']} (F1 {best.metrics['f1']:.2f})"
