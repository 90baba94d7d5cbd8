"""`flywheel demo`: the whole flywheel once, on a small simulated dataset, on a local Ray cluster.

1. synthesize SO-101 episodes in the simulator (`flywheel synth`), with frames recorded after
   each success (what the reward classifier learns from);
2. Stage 0: label them from the simulator's progress (`flywheel label`) and show where the
   positive labels went;
3. Stage 1: train a small advantage estimator on Ray Train (`flywheel train-estimator`);
4. Stage 2: estimate every frame's advantage on Ray Data (`flywheel estimate`), and Stage 0
   again from the estimate: how often it agrees with the labels from true progress;
5. Stage 3: train an AWBC policy on the estimate's labels and a plain BC policy on the same
   frames (`flywheel train-policy`, a short budget), and roll both out in the simulator on the
   same seeds (`flywheel eval-policy`);
6. the reward classifier: trained on the episodes' success frames (`flywheel train-classifier`,
   Ray Train), served (`flywheel serve-reward`, Ray Serve) and asked over HTTP about every frame
   of the held-out test episodes, by four robots at once;
7. HIL-SERL (`flywheel hilserl`) for a short run in the simulator: the served classifier decides
   the rewards and the episode ends (a success on 3 frames in a row, `--success-frames 3`: the
   demo's small classifier has single frames a policy learns to exploit), the simulated
   operator takes over when the policy drifts, the step-3 estimator's image encoder (frozen)
   feeds the actor and critic; the intervention rate of the first episodes against the last
   shows the operator being needed less, and the simulator's own success says whether the
   classifier's successes were real;
8. a 3-trial Ray Tune sweep (`flywheel sweep reward-threshold`) over the classifier's decision
   threshold on the held-out frames: its table and metric-against-parameter plot.

Everything runs at 64 x 64 pixels (synth's frames, every model's input), HIL-SERL's image size
on CPUs, so the whole flywheel turns on a laptop.

Each step is a function of the demo's folder (`--out`): what a step makes (datasets, checkpoints,
figures) lives there, and what later steps need of it is recorded in `demo.json` (written
atomically), so `flywheel demo --stage N` runs step N alone on the outputs of the steps before
it, and says which step to run first when they are missing. The whole demo starts from an empty
folder (it removes its own earlier output, nothing else). At the end it prints one summary table,
a row per step, and where the MLflow runs went.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import estimate, label, synth, train_estimator
from pipelines.classifier.labels import success_csv_path
from pipelines.dataset import DatasetError, LeRobotDataset, atomic_write_json
from pipelines.evaluation import driver as eval_policy
from pipelines.policy import driver as train_policy
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError
from pipelines.runtime.tracking import TrackingError, check_tracking_uri

AFTER_SUCCESS = 10  # frames recorded after each success: what the reward classifier learns
IMAGE_SIZE = 64  # synth's frames and every model's input
SWEEP_THRESHOLDS = [0.3, 0.5, 0.7]


class DemoError(Exception):
    """A step's inputs are missing (run the step that makes them first)."""


def positive_share(dataset: Path, episodes: list[dict]) -> dict[str, float]:
    """Share of frames labeled positive, per controller that made the episodes."""
    ds = LeRobotDataset(dataset)
    by: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        ti = ds.read_episode(ep["episode_index"], ["task_index"])["task_index"].to_numpy()
        by.setdefault(ep["controller"], []).append(ti % 2)
    return {name: float(np.concatenate(v).mean()) for name, v in sorted(by.items())}


@dataclass
class Demo:
    """The demo's folder and what its steps have recorded in `demo.json`."""

    out: Path
    args: argparse.Namespace
    state: dict = field(default_factory=dict)

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def state_path(self) -> Path:
        return self.out / "demo.json"

    def load(self) -> None:
        import json

        if self.state_path.exists():
            try:
                self.state = json.loads(self.state_path.read_text())
            except ValueError as e:
                raise DemoError(f"{self.state_path}: not JSON ({e}); rerun the whole demo") from e

    def record(self, step: int, **values) -> None:
        import json

        plain = json.dumps(values, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        self.state[str(step)] = json.loads(plain)
        atomic_write_json(self.state_path, self.state)

    def need(self, step: int) -> dict:
        if str(step) not in self.state:
            raise DemoError(
                f"{self.state_path}: step {step} ({STEPS[step - 1][0]}) has not run here; run "
                f"`flywheel demo --stage {step} --out {self.out}` first (or the whole demo)"
            )
        return self.state[str(step)]

    def labeling(self) -> dict:
        return dict(
            dataset=str(self.dataset),
            threshold=30.0,
            ray_address=self.args.ray_address,
            mlflow=not self.args.no_mlflow,
        )


def synthesize(d: Demo) -> str:
    a = d.args
    for old in (d.dataset, d.runs):  # the demo's own output from an earlier run
        if old.exists():
            shutil.rmtree(old)
    success_csv_path(d.dataset).unlink(missing_ok=True)
    print(f"  {a.episodes} episodes as Ray tasks -> {d.dataset}")
    made = synth.run(
        synth.SynthConfig(
            out=str(d.dataset),
            episodes=a.episodes,
            seed=a.seed,
            steps_after_success=AFTER_SUCCESS,
            image_size=IMAGE_SIZE,
            ray_address=a.ray_address,
        )
    )
    print(f"  {len(made.episodes)} episodes, {made.frames} frames in {made.seconds:.1f} s")
    for line in synth.summary_lines(made):
        print(line)
    d.record(1, episodes=made.episodes, frames=made.frames)
    return f"{len(made.episodes)} episodes, {made.frames} frames"


def label_from_progress(d: Demo) -> str:
    made = d.need(1)
    result = label.run(label.LabelConfig(**d.labeling()), out=lambda *a: None)
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
    a = d.args
    print(f"  {a.steps} steps, 2 Ray Train workers")
    trained = train_estimator.run(
        train_estimator.TrainConfig(
            dataset=str(d.dataset),
            variant="kai0",
            workers=2,
            steps=a.steps,
            batch_size=16,
            image_size=IMAGE_SIZE,
            checkpoint_every=max(1, a.steps // 3),
            storage=str(d.runs),
            name="demo-estimator",
            seed=a.seed,
            ray_address=a.ray_address,
            mlflow=not a.no_mlflow,
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
    a = d.args
    print("  every frame through the estimator (Ray Data)")
    est = estimate.run(
        estimate.EstimateConfig(
            dataset=str(d.dataset), checkpoint=trained["checkpoint"], ray_address=a.ray_address
        )
    )
    print(f"  {est.frames} frames in {est.seconds:.1f} s -> {est.out_dir}")
    print("  Stage 0 from the estimate (absolute_advantage, top 30% positive)")
    truth = _labels(d.dataset, "data")
    label.run(
        label.LabelConfig(
            **d.labeling(), data_dir=est.out_dir.name, advantage_source="absolute_advantage"
        ),
        out=lambda *a: None,
    )
    estimated = _labels(d.dataset, est.out_dir.name)
    from pipelines.runtime.training import split_episodes

    _, held = split_episodes(LeRobotDataset(d.dataset).episode_indices, 0.2, a.seed)
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
    a = d.args
    print(
        f"  AWBC (prompts from the estimated labels) and plain BC, {a.policy_steps} steps each "
        f"on 2 Ray Train workers, then {a.eval_episodes} simulated episodes each on the same seeds"
    )
    checkpoints = {}
    for arm, conditioning in (("awbc", "prompt"), ("bc", "none")):
        trained = train_policy.run(
            train_policy.TrainPolicyConfig(
                dataset=str(d.dataset),
                data_dir=data_dir,
                conditioning=conditioning,
                steps=a.policy_steps,
                checkpoint_every=a.policy_steps,
                storage=str(d.runs),
                name=f"demo-{arm}",
                seed=a.seed,
                ray_address=a.ray_address,
                mlflow=not a.no_mlflow,
            )
        )
        checkpoints[arm] = str(trained.checkpoint)
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
            episodes=a.eval_episodes,
            seed=a.seed,
            ray_address=a.ray_address,
            mlflow=not a.no_mlflow,
        )
    )
    for line in eval_policy.summary_lines(result):
        print(line)
    rates = {arm.name: arm.summary()["success_rate"] for arm in result.arms}
    d.record(5, checkpoints=checkpoints, success_rates=rates)
    return ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items()) + " success"


def reward_classifier(d: Demo) -> str:
    d.need(1)
    a = d.args
    print(
        f"  train ({a.classifier_steps} steps, Ray Train), serve (Ray Serve), score the held-out "
        "frames over HTTP"
    )
    try:
        scored = reward_classifier_step(
            d.dataset,
            d.runs,
            steps=a.classifier_steps,
            seed=a.seed,
            ray_address=a.ray_address,
            mlflow=not a.no_mlflow,
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


def hilserl_with_served_reward(d: Demo) -> str:
    """HIL-SERL with the step-6 classifier served as the reward, the simulated operator on."""
    clf = d.need(6)
    estimator = d.need(3)["checkpoint"]
    a = d.args
    from ray import serve

    from pipelines import hilserl
    from serving.reward import ServeConfig, serve_reward

    print(
        f"  {a.hilserl_steps} env steps in the simulator, 1 collector, the simulated operator; "
        "reward and episode ends from the served classifier (Ray Serve, through its handle); "
        "the step-3 estimator's image encoder frozen under the actor and critic"
    )
    serve_reward(
        ServeConfig(
            checkpoint=clf["checkpoint"],
            port=free_port(),
            cpus_per_replica=0,
            threads=1,
            ray_address=a.ray_address,
        )
    )
    try:
        result = hilserl.run(
            hilserl.HilserlConfig(
                encoder=f"frozen:{estimator}",
                reward="classifier",
                success_frames=3,
                steps=a.hilserl_steps,
                checkpoint_every=a.hilserl_steps,
                name="demo-hilserl",
                storage=str(d.runs),
                seed=a.seed,
                ray_address=a.ray_address,
                mlflow=not a.no_mlflow,
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


def window(episodes: int) -> int:
    """Episodes at each end over which the intervention rate is compared (10, fewer if short)."""
    return max(1, min(10, episodes // 3))


def intervention_rates(episodes: list[dict]) -> tuple[float, float]:
    """Intervened steps / steps over the first and the last `window` episodes."""
    n = window(len(episodes))

    def rate(part: list[dict]) -> float:
        return sum(e["intervention_steps"] for e in part) / max(1, sum(e["length"] for e in part))

    return rate(episodes[:n]), rate(episodes[-n:])


def threshold_sweep(d: Demo) -> str:
    """Ray Tune over the classifier's decision threshold, scored on its held-out frames."""
    clf = d.need(6)
    a = d.args
    from pipelines import sweep

    print(
        f"  {len(SWEEP_THRESHOLDS)} trials (threshold {', '.join(map(str, SWEEP_THRESHOLDS))}) "
        "on the classifier's held-out frames; metric F1"
    )
    result = sweep.run(
        sweep.SweepConfig(
            kind="reward-threshold",
            inputs=[clf["checkpoint"], str(d.dataset)],
            space={"threshold": list(SWEEP_THRESHOLDS)},
            name="demo-sweep",
            storage=str(d.runs),
            ray_address=a.ray_address,
            mlflow=not a.no_mlflow,
        ),
        out=lambda *_: None,
    )
    print(sweep.results_table(result.kind, result.rows))
    print(f"  table {result.csv_path}, plot {result.png_path}")
    best = sweep.best_row(result.rows, result.kind.metric)
    if best is None:
        raise DemoError(f"{result.folder}: no trial finished; rerun step 8")
    d.record(8, best=best.params, f1=best.metrics.get("f1"), csv=str(result.csv_path))
    return f"best threshold {best.params['threshold']} (F1 {best.metrics['f1']:.2f})"


def free_port() -> int:
    """A free local port (8000 may be another job's on a shared machine)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STEPS: list[tuple[str, Callable[[Demo], str]]] = [
    ("synthesize SO-101 episodes in the simulator", synthesize),
    ("Stage 0: label from progress (binary, top 30% positive)", label_from_progress),
    ("Stage 1: train the kai0 advantage estimator (Ray Train)", train_the_estimator),
    ("Stage 2: estimate every frame (Ray Data), relabel from the estimate", estimate_and_relabel),
    ("Stage 3: AWBC against plain BC, in the simulator on the same seeds", awbc_against_bc),
    ("the reward classifier: train (Ray Train), serve (Ray Serve), score", reward_classifier),
    ("HIL-SERL with the served reward and the operator", hilserl_with_served_reward),
    ("a 3-trial Ray Tune sweep over the reward threshold", threshold_sweep),
]


def main(argv: Sequence[str] | None = None, prog: str = "flywheel demo") -> int:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="flywheel-demo", help="output folder (default flywheel-demo)")
    p.add_argument("--stage", type=int, default=None, help=f"run only this step (1..{len(STEPS)})")
    p.add_argument("--episodes", type=int, default=40, help="episodes to simulate (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150, help="estimator training steps (150)")
    p.add_argument("--policy-steps", type=int, default=300, help="policy training steps (300)")
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per policy (20)")
    p.add_argument(
        "--classifier-steps", type=int, default=60, help="reward classifier training steps (60)"
    )
    p.add_argument("--hilserl-steps", type=int, default=5000, help="HIL-SERL env steps (5000)")
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    if args.stage is not None and not 1 <= args.stage <= len(STEPS):
        p.error(f"--stage: {args.stage} is not a step (1..{len(STEPS)})")
    demo = Demo(Path(args.out).resolve(), args)
    chosen = range(1, len(STEPS) + 1) if args.stage is None else [args.stage]
    rows = []
    try:
        mlflow_uri = None if args.no_mlflow else check_tracking_uri()
        if args.stage is None and demo.state_path.exists():
            demo.state_path.unlink()  # a whole demo starts over
        demo.load()
        for step in chosen:
            title, run_step = STEPS[step - 1]
            print(f"[{step}/{len(STEPS)}] {title}", flush=True)
            t = time.time()
            result = run_step(demo)
            rows.append((step, title, result, time.time() - t))
    except (DatasetError, ClusterError, TrackingError, DemoError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print()
    print(summary_table(rows))
    print(f"Outputs: {demo.out}")
    if mlflow_uri:
        print(f"MLflow runs: {mlflow_uri} (mlflow ui --backend-store-uri {mlflow_uri})")
    return 0


def summary_table(rows: list[tuple[int, str, str, float]]) -> str:
    """One row per step that ran: what it did, its result, its wall time."""
    lines = ["| step | what | result | time |", "|---|---|---|---|"]
    lines += [f"| {n} | {title} | {result} | {s:.0f} s |" for n, title, result, s in rows]
    lines.append(f"| | total | | {sum(r[3] for r in rows):.0f} s |")
    return "\n".join(lines)


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
    import threading
    import time

    from ray import serve

    from pipelines.classifier.data import load_frames
    from pipelines.classifier.driver import TrainConfig
    from pipelines.classifier.driver import run as train_classifier
    from pipelines.classifier.labels import read_success_csv
    from pipelines.classifier.metrics import binary_metrics
    from pipelines.runtime.training import read_meta
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
            image_size=IMAGE_SIZE,
            checkpoint_every=steps,
            storage=str(storage),
            name="demo-classifier",
            seed=seed,
            ray_address=ray_address,
            mlflow=mlflow,
        )
    )
    meta = read_meta(trained.checkpoint, "classifier")
    port = free_port()
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
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.demo"))
