"""HIL-SERL quality bar: simulated reach-and-grasp learned from scratch with the operator.

    python benchmarks/hilserl_quality.py [--work DIR] [--steps 20000] [--runs bc,nobc,classifier]
        [--eval-episodes 50] [--quick]

Reproducible from scratch with fixed seeds, every stage through Flywheel's own commands:

1. **Data for the frozen encoder**: `flywheel synth` (200 default-mix episodes, 64 x 64, seed 0).
2. **Frozen encoder**: `flywheel train-estimator --variant pi06` on it (600 steps, 2 workers,
   seed 0): an estimator's image encoder, trained on simulator data (allowed by the bar); the
   actor and critic start untrained.
3. **Runs**: `flywheel hilserl --encoder frozen:<estimator>` with one sim collector and the
   simulated operator, `--steps` env steps (20k), seed 0, the defaults otherwise (batch 256,
   hidden 256 on CPUs, utd 1, one learner step per env step, n-step 3, gamma 0.99, sparse
   reward ending the episode on success, the seed's noise schedule):
   * `bc`: `--bc-weight 0.5` (the bar);
   * `nobc`: `--bc-weight 0`;
   * `classifier`: `--bc-weight 0.5 --reward classifier`: the reward classifier (issue 11;
     trained with `flywheel train-classifier` on its own synth data, served with
     `flywheel serve-reward`) decides rewards and episode ends; skipped if this Flywheel has no
     classifier.
4. **Evaluation**: each run's saved actor over `--eval-episodes` seeded episodes without the
   operator (seeds 10000 + k, none of them a training seed), by eval-policy's rule: `flywheel
   eval-policy CHECKPOINT` when it is available, else the same episodes in-process
   (`pipelines.rl.policy.evaluate_actor`).

Reported per run: success over the evaluation episodes, steps to success, the Q monitor's alarm
count, the intervention rate falling (first and last 20 episodes), wall time, CPU time (the
learner's and collectors' processes) and the load average seen; the curves as PNGs
(`benchmarks/results/hilserl_curves.png`). Success does not depend on the machine's load; the
wall time does (the 45-minute budget is for a quiet 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
EVAL_SEED = 10_000


class LoadSampler:
    """The 1-minute load average, sampled every 10 s while a stage runs."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(10):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def summary(self) -> dict:
        s = np.array(self.samples or [np.nan])
        return {"mean": round(float(s.mean()), 1), "max": round(float(s.max()), 1)}


def stage(name: str):
    print(f"== {name} ({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f})", flush=True)


def encoder_checkpoint(work: Path, quick: bool) -> str:
    from pipelines.estimator.config import EstimatorTrainConfig as TrainConfig
    from pipelines.estimator.training import run as train
    from pipelines.synth import SynthConfig
    from pipelines.synth import run as synth

    data = work / "encoder_data"
    if not (data / "meta" / "info.json").exists():
        stage("synth: data for the frozen encoder")
        synth(SynthConfig(str(data), episodes=20 if quick else 200, image_size=64, seed=0))
    stage("train-estimator: the frozen encoder")
    result = train(
        TrainConfig.from_flags(
            dataset=str(data),
            variant="pi06",
            steps=40 if quick else 600,
            workers=2,
            image_size=64,
            holdout=0.1,
            seed=0,
            name="encoder",
            storage=str(work / "runs"),
            mlflow=False,
        )
    )
    return result.checkpoint


def classifier_endpoint(work: Path, quick: bool) -> str:
    """Train (`flywheel train-classifier --labels`, on synth's success-frames CSV) and serve
    (`flywheel serve-reward`) the reward classifier; its Serve application's name."""
    from pipelines.classifier.config import ClassifierTrainConfig as TrainConfig
    from pipelines.classifier.labels import success_csv_path
    from pipelines.classifier.training import run as train_classifier
    from pipelines.synth import SynthConfig
    from pipelines.synth import run as synth
    from serving import RewardAppConfig, ServeConfig, serve_reward

    data = work / "classifier_data"
    if not (data / "meta" / "info.json").exists():
        stage("synth: data for the reward classifier")
        synth(
            SynthConfig(
                str(data), episodes=20 if quick else 100, image_size=64, seed=1,
                steps_after_success=30,
            ),
            out=lambda *a: None,
        )  # fmt: skip
    stage("train-classifier")
    result = train_classifier(
        TrainConfig.from_flags(
            dataset=str(data), labels=str(success_csv_path(data)), steps=40 if quick else 1000,
            image_size=64, workers=2, name="reward-classifier", storage=str(work / "runs"),
            mlflow=False,
        )
    )  # fmt: skip
    stage(f"serve-reward {result.checkpoint}")
    import socket

    with socket.socket() as s:  # a free port: 8000 may be another job's on a shared machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve_reward(ServeConfig(RewardAppConfig(result.checkpoint, num_cpus=0, threads=1), port=port))
    return "reward"


def hilserl_run(name: str, work: Path, encoder: str, steps: int, **options) -> dict:
    from actors import hilserl

    cfg = hilserl.HilserlConfig.from_flags(
        encoder=f"frozen:{encoder}",
        steps=steps,
        name=name,
        storage=str(work / "runs"),
        seed=0,
        mlflow=False,
        **options,
    )
    stage(f"hilserl {name}: {options}")
    t0, cpu0 = time.time(), time.process_time()
    with LoadSampler() as sampler:
        result = hilserl.run(cfg)
    wall = time.time() - t0
    s = result.status
    episodes = result.history.get("episodes", [])

    def rate(eps):
        steps_ = sum(e["length"] for e in eps)
        return sum(e["intervention_steps"] for e in eps) / max(steps_, 1)

    return {
        "name": name,
        "options": options,
        "checkpoint": result.checkpoint,
        "run_dir": result.run_dir,
        "env_steps": s.get("env_steps"),
        "episodes": s.get("episodes"),
        "learner_steps": s.get("learner_steps"),
        "q_alarms": s.get("q_alarms"),
        "q_exceeded_updates": s.get("q_exceeded_updates"),
        "intervention_rate_first_20": rate(episodes[:20]),
        "intervention_rate_last_20": rate(episodes[-20:]),
        "success_with_operator_last_20": float(np.mean([e["success"] for e in episodes[-20:]])),
        "wall_s": round(wall, 1),
        "cpu_s": {
            "learner": round(s.get("learner_cpu_s", float("nan")), 1),
            "collectors": round(s.get("collector_cpu_s", float("nan")), 1),
            "driver": round(time.process_time() - cpu0, 1),
        },
        "load": sampler.summary(),
    }


def evaluate(checkpoint: str, episodes: int) -> dict:
    try:
        from pipelines.evaluation.driver import EvalConfig, run as eval_run  # noqa

        import pipelines.rl.eval_loader  # noqa: F401  (registers the hilserl loader)
    except ImportError:
        from pipelines.rl.policy import evaluate_actor as in_process

        report = in_process(checkpoint, episodes=episodes, seed=EVAL_SEED)
        report["how"] = "pipelines.rl.policy.evaluate_actor (eval-policy's episodes, in-process)"
        return {k: v for k, v in report.items() if k != "outcomes"}
    result = eval_run(
        EvalConfig(checkpoint, episodes=episodes, seed=EVAL_SEED, mlflow=False, videos=0)
    )
    arm = result.arms[0].summary()
    return {
        "episodes": episodes,
        "success_rate": arm["success_rate"],
        "mean_steps_to_success": arm.get("mean_steps_to_success"),
        "how": f"flywheel eval-policy {checkpoint} --episodes {episodes} --seed {EVAL_SEED}",
    }


def curves(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for run in runs:
        history = json.loads((Path(run["run_dir"]) / "history.json").read_text())
        eps = [e for e in history["episodes"]]
        steps = np.array([e["env_steps"] for e in eps])
        lengths = np.array([e["length"] for e in eps], float)
        interv = np.array([e["intervention_steps"] for e in eps], float)
        alone = np.array([e["success"] and e["intervention_steps"] == 0 for e in eps], float)
        w = 20
        rate = [interv[max(0, i - w + 1) : i + 1].sum() / lengths[max(0, i - w + 1) : i + 1].sum()
                for i in range(len(eps))]  # fmt: skip
        auto = [alone[max(0, i - w + 1) : i + 1].mean() for i in range(len(eps))]
        length = [lengths[max(0, i - w + 1) : i + 1].mean() for i in range(len(eps))]
        label = f"{run['name']} (eval {run['eval']['success_rate']:.0%})"
        axes[0].plot(steps, rate, label=label)
        axes[1].plot(steps, auto, label=label)
        axes[2].plot(steps, length, label=label)
    axes[0].set_title("intervention rate (20-episode running average)", fontsize=9)
    axes[1].set_title("episodes the policy finished alone (20-ep. average)", fontsize=9)
    axes[2].set_title("episode length, steps (20-ep. average)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(ROOT / "hilserl-quality"))
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--runs", default="bc,nobc,classifier")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--encoder", default=None, help="reuse a frozen encoder checkpoint")
    p.add_argument("--quick", action="store_true", help="a small smoke run of every stage")
    p.add_argument("--out", default=str(RESULTS / "hilserl_quality.json"))
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work.resolve() / 'mlflow.db'}")
    steps = 600 if args.quick else args.steps
    report = {"steps": steps, "eval_episodes": args.eval_episodes, "cpus": os.cpu_count()}
    t0 = time.time()
    with LoadSampler() as sampler:
        encoder = args.encoder or encoder_checkpoint(work, args.quick)
    report["encoder"] = {
        "checkpoint": encoder,
        "seconds": round(time.time() - t0),
        "load": sampler.summary(),
    }
    wanted = args.runs.split(",")
    plans = {
        "bc": {"bc_weight": 0.5},
        "nobc": {"bc_weight": 0.0},
        "classifier": {"bc_weight": 0.5, "reward": "classifier"},
    }
    # runs made one at a time (`--runs bc`, then `--runs nobc`, ...) gather in one report
    out = Path(args.out)
    earlier = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = [r for r in earlier if r["name"] not in wanted and r.get("steps", steps) == steps]
    for name in wanted:
        options = dict(plans[name])
        if name == "classifier":
            options["reward_app"] = classifier_endpoint(work, args.quick)
        run = hilserl_run(name, work, encoder, steps, **options)
        stage(f"evaluate {name}")
        run["steps"] = steps
        run["encoder"] = report["encoder"]["checkpoint"]
        run["eval"] = evaluate(run["checkpoint"], args.eval_episodes)
        print(json.dumps(run, indent=1), flush=True)
        runs.append(run)
        report["runs"] = runs
        from pipelines.dataset import atomic_write_json

        atomic_write_json(out, report)
    if runs:
        curves(runs, RESULTS / "hilserl_curves.png")
        for run in runs:
            src = Path(run["run_dir"]) / "learning_curves.png"
            if src.exists():
                dest = RESULTS / f"hilserl_{run['name']}_learning_curves.png"
                dest.write_bytes(src.read_bytes())
    print(f"Report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
