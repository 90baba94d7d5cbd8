"""`flywheel sweep KIND ...`: Ray Tune sweeps over the knobs that matter, Train V2 inside.

Kinds (the parameters each sweeps; every combination of the given values is one trial):

* `awbc DATASET` over the labeling `--threshold` (and `--n-slices`, `--cfg-scale`). Each trial
  copies the dataset into its own folder (data and metadata copied, videos hard-linked or
  copied: the user's dataset is never touched and no two trials share a label), labels the
  copy (`flywheel label`), trains the policy (`flywheel train-policy`, whose Ray Train run gets
  a `TuneReportCallback`: every checkpoint report is a Tune iteration, so ASHA sees the
  training L1 and stops the trials that lag) and evaluates it (`flywheel eval-policy`) on the
  same seeds as every other trial. The metric is the success rate.
* `reward-threshold CHECKPOINT DATASET` over the classifier's decision `--threshold`. The
  frames are scored once, in the driver (the checkpoint's held-out episodes when DATASET is
  the one it was trained on, else every episode); every trial measures accuracy, precision,
  recall and F1 from those scores. The metric is F1.
* `hilserl` over `--bc-weight` (and `--online-ratio`): each trial runs `flywheel hilserl` and
  evaluates its policy with eval-policy on the shared seeds. The metric is the success rate.
  Needs the HIL-SERL job (`pipelines.hilserl`) in the build.

Design:

* **Driver functions, not `Tuner(trainer)`** (deprecated with Train V2): a trial is a plain
  function that builds the `TorchTrainer` itself (through `pipelines.runtime.training.fit`), with
  `ray.tune.integration.ray_train.TuneReportCallback()` in the Train run's callbacks.
* **Resources.** A trial's function reserves no CPU (a tiny memory reservation only): the Train
  workers, Ray Data tasks and evaluation tasks it starts reserve their own, and a function
  holding a CPU would keep a Train run of the same trial from ever starting on a small
  cluster. What bounds the load is `max_concurrent_trials`: the cluster's CPUs (and GPUs)
  divided by what one trial's largest phase needs (`--workers` x `--cpus-per-worker`, ...),
  at most the number of trials. Every Train run starts only when all its workers fit.
* **Stable names.** A trial is named after its parameter values (`threshold=30`); its folder
  (`<storage>/sweeps/<name>/trials/<trial>/`: dataset copy, Train run, evaluation report) and
  its Train run carry that name, so a rerun finds them.
* **Resume.** Rerunning the same `--name` restores the Tune experiment (`Tuner.restore`):
  finished trials keep their results, unfinished and failed ones run again, and inside them
  every step resumes (a labeled copy is not relabeled, a Train run continues from its last
  checkpoint). The sweep's spec (kind, inputs, space, budget) is kept in `sweep.json`; a rerun
  with another spec under the same name is refused with the differences.
* **MLflow**: one experiment (`flywheel-sweep-<kind>`), one run per trial (Tune's
  `MLflowLoggerCallback`: parameters and every report), and a `summary` run with the results
  table (`results.csv`) and the metric-against-parameter plot (`metric.png`). Both files are
  also written (atomically) into the sweep's folder.

Also `python -m pipelines.sweep` (for `ray job submit`; outputs need absolute paths there).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.dataset import DatasetError, atomic_write_json, atomic_write_text
from pipelines.runtime.cli import JobParser, job_error
from pipelines.runtime.cluster import ClusterError, check_job_output
from pipelines.runtime.tracking import TrackingError

# --------------------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class Param:
    """A swept parameter: its flag, value type and allowed range (inclusive)."""

    name: str
    kind: type
    low: float
    high: float = math.inf

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw, where: str):
        """One value from a flag's text or a YAML item; a DatasetError naming `where`."""
        if isinstance(raw, bool):
            raise DatasetError(f"{where}: {raw!r} is not a number")
        text = str(raw).strip()
        if not text:
            raise DatasetError(f"{where}: an empty value")
        try:
            number = float(text)
        except ValueError:
            raise DatasetError(f"{where}: {text!r} is not a number") from None
        if not math.isfinite(number):
            raise DatasetError(f"{where}: {text!r} is not a finite number")
        if self.kind is int:
            if number != int(number):
                raise DatasetError(f"{where}: {text!r} is not a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            high = "" if self.high == math.inf else f" and {self.high:g}"
            what = f"between {self.low:g}{high}" if high else f"at least {self.low:g}"
            raise DatasetError(f"{where}: {text} must be {what}")
        return number


@dataclass(frozen=True)
class Kind:
    name: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    required: str  # the parameter every sweep of this kind must sweep
    metric: str  # the sweep's metric (higher is better)
    metrics: tuple[str, ...]  # the columns of the results table

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


KINDS = {
    k.name: k
    for k in (
        Kind(
            "awbc",
            ("DATASET",),
            (
                Param("threshold", float, 0, 100),
                Param("n_slices", int, 2),
                Param("cfg_scale", float, 0),
            ),
            "threshold",
            "success_rate",
            ("success_rate", "successes", "episodes", "ci95_low", "ci95_high", "l1", "heldout_l1"),
        ),
        Kind(
            "reward-threshold",
            ("CHECKPOINT", "DATASET"),
            (Param("threshold", float, 0, 1),),
            "threshold",
            "f1",
            ("f1", "accuracy", "precision", "recall", "tp", "fp", "fn", "tn", "frames"),
        ),
        Kind(
            "hilserl",
            (),
            (Param("bc_weight", float, 0), Param("online_ratio", float, 0, 1)),
            "bc_weight",
            "success_rate",
            ("success_rate", "successes", "episodes", "ci95_low", "ci95_high", "env_steps"),
        ),
    )
}


def parse_values(param: Param, raw, where: str | None = None) -> list:
    """A flag's comma-separated text (or a YAML list / scalar) -> distinct values, in order."""
    where = where or param.flag
    if isinstance(raw, (list, tuple)):
        items = list(raw)
    elif isinstance(raw, str):
        items = raw.split(",")
    else:
        items = [raw]
    if not items or (isinstance(raw, str) and not raw.strip()):
        raise DatasetError(f"{where}: no values (give e.g. {param.flag} 10,30,50)")
    values = []
    for item in items:
        value = param.parse(item, f"{where} {raw if isinstance(raw, str) else item!r}")
        if value not in values:
            values.append(value)
    return values


def trial_name(params: dict) -> str:
    """A trial's stable name from its parameter values (`threshold=30,cfg_scale=1.5`)."""
    return ",".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of the swept values, in the order Tune's grid search runs them."""
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*space.values())]


# --------------------------------------------------------------------------- the config


@dataclass
class SweepConfig:
    kind: str
    inputs: list[str] = field(default_factory=list)
    space: dict[str, list] = field(default_factory=dict)
    name: str | None = None
    storage: str = "flywheel-runs"
    # awbc: training and evaluation budget of every trial
    steps: int = 300
    checkpoint_every: int | None = None  # default: steps / 5 (each report a Tune iteration)
    workers: int = 1
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    batch_size: int = 32
    image_size: int = 64
    eval_episodes: int = 20
    eval_seed: int = 1000
    # hilserl: options of every trial's run (HilserlConfig fields)
    hilserl: dict = field(default_factory=dict)
    # Tune
    max_concurrent_trials: int | None = None  # default: what the cluster holds
    grace_period: int = 1
    reduction_factor: int = 3
    ray_address: str | None = None
    mlflow: bool = True

    @property
    def sweep_name(self) -> str:
        return self.name or f"sweep-{self.kind}"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve() / "sweeps" / self.sweep_name

    @property
    def every(self) -> int:
        return self.checkpoint_every or max(1, self.steps // 5)

    @property
    def spec(self) -> dict:
        """What defines the sweep's trials (a rerun under the same name must keep it)."""
        keep = {
            "awbc": (
                "steps",
                "every",
                "workers",
                "batch_size",
                "image_size",
                "eval_episodes",
                "eval_seed",
            ),
            "reward-threshold": (),
            "hilserl": ("hilserl", "eval_episodes", "eval_seed"),
        }[self.kind]
        return {
            "kind": self.kind,
            "inputs": [str(Path(p).resolve()) for p in self.inputs],
            "space": self.space,
            **{k: getattr(self, k) for k in keep},
        }


# Options a --config YAML may set besides the swept parameters (the flags' names).
OPTIONS = {
    "name": str,
    "storage": str,
    "steps": int,
    "checkpoint_every": int,
    "workers": int,
    "cpus_per_worker": int,
    "gpus_per_worker": float,
    "batch_size": int,
    "image_size": int,
    "eval_episodes": int,
    "eval_seed": int,
    "hilserl": dict,
    "max_concurrent_trials": int,
    "grace_period": int,
    "reduction_factor": int,
    "ray_address": str,
}


def read_config_file(path: str | os.PathLike, kind: Kind) -> tuple[dict[str, list], dict]:
    """(search space, options) of a sweep YAML file; one-line DatasetErrors naming the file.

    Keys: the kind's parameters (a list of values, one value or "a,b,c"), the options of
    OPTIONS (flag names, `-` or `_`), and optionally `kind` (must match the command's).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DatasetError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise DatasetError(f"{path}: not valid YAML{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = type(data).__name__
        raise DatasetError(f"{path}: a mapping of parameters and options, not a {what}")
    space, options = {}, {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key == "kind":
            if value != kind.name:
                raise DatasetError(f"{path}: kind {value!r}, but the command sweeps {kind.name!r}")
            continue
        param = kind.param(key)
        if param is not None:
            space[key] = parse_values(param, value, f"{path}: {raw_key}")
            continue
        if key not in OPTIONS:
            known = [p.name for p in kind.params] + sorted(OPTIONS)
            raise DatasetError(
                f"{path}: unknown key {raw_key!r} for a {kind.name} sweep "
                f"(known: kind, {', '.join(known)})"
            )
        want = OPTIONS[key]
        ok = isinstance(value, want) and not isinstance(value, bool)
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            what = {dict: "a mapping", int: "an integer", float: "a number", str: "a string"}[want]
            raise DatasetError(f"{path}: {raw_key} {value!r} is not {what}")
        options[key] = float(value) if want is float else value
    return space, options


def check_config(cfg: SweepConfig) -> Kind:
    """Every check of the sweep's settings that needs no Ray (one-line DatasetErrors)."""
    kind = KINDS.get(cfg.kind)
    if kind is None:
        raise DatasetError(f"kind {cfg.kind!r}: one of {', '.join(KINDS)}")
    if len(cfg.inputs) != len(kind.inputs):
        want = " ".join(kind.inputs) or "no positional inputs"
        raise DatasetError(
            f"sweep {kind.name}: takes {want}, got {len(cfg.inputs)} ({' '.join(cfg.inputs)})"
        )
    unknown = [k for k in cfg.space if kind.param(k) is None]
    if unknown:
        raise DatasetError(f"--{unknown[0].replace('_', '-')}: not a parameter of {kind.name}")
    if kind.required not in cfg.space:
        flag = kind.param(kind.required).flag
        raise DatasetError(f"{flag}: a {kind.name} sweep needs values (e.g. {flag} 0.1,0.5)")
    for name, values in cfg.space.items():
        if not values:
            raise DatasetError(f"{kind.param(name).flag}: no values")
    for flag, value, low in (
        ("--steps", cfg.steps, 1),
        ("--checkpoint-every", cfg.every, 1),
        ("--workers", cfg.workers, 1),
        ("--cpus-per-worker", cfg.cpus_per_worker, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--eval-episodes", cfg.eval_episodes, 1),
        ("--eval-seed", cfg.eval_seed, 0),
        ("--grace-period", cfg.grace_period, 1),
        ("--reduction-factor", cfg.reduction_factor, 2),
        ("--max-concurrent-trials", cfg.max_concurrent_trials or 1, 1),
        ("--gpus-per-worker", cfg.gpus_per_worker, 0),
    ):
        if value < low:
            raise DatasetError(f"{flag} {value}: at least {low}")
    if not cfg.sweep_name or "/" in cfg.sweep_name or cfg.sweep_name in (".", ".."):
        raise DatasetError(f"--name {cfg.sweep_name!r}: a folder name")
    for label, path in zip(kind.inputs, cfg.inputs, strict=True):
        if not Path(path).exists():
            raise DatasetError(f"{label} {path}: no such file or folder")
    if kind.name == "hilserl":
        _check_hilserl_options(cfg)
    return kind


# --------------------------------------------------------------------------- resources


def trial_needs(cfg: SweepConfig) -> dict[str, float]:
    """What one trial's largest phase reserves on the cluster (CPU, GPU)."""
    if cfg.kind == "awbc":  # the Train run (labeling and evaluation tasks take fewer)
        need = {"CPU": float(cfg.workers * cfg.cpus_per_worker)}
        if cfg.gpus_per_worker:
            need["GPU"] = cfg.workers * cfg.gpus_per_worker
        return need
    if cfg.kind == "hilserl":  # the collectors and the learner, each busy on its own core
        need = {"CPU": float(int(cfg.hilserl.get("collectors", 1)) + 1)}
        if cfg.gpus_per_worker:
            need["GPU"] = float(cfg.gpus_per_worker)
        return need
    return {"CPU": 1.0}  # reward-threshold: numpy over scores computed once


def concurrency(
    have: dict[str, float], need: dict[str, float], trials: int, asked: int | None = None
) -> int:
    """How many trials run at once: what the cluster holds of `need`, at most `trials`.

    `asked` (--max-concurrent-trials) overrides the cluster's count (an autoscaling cluster);
    a cluster that cannot hold one trial is a ClusterError unless
    FLYWHEEL_WAIT_FOR_RESOURCES=1.
    """
    if asked is not None:
        return max(1, min(asked, trials))
    fits = trials
    for resource, amount in need.items():
        if amount <= 0:
            continue
        fits = min(fits, int(have.get(resource, 0.0) / amount + 1e-9))
    if fits < 1:
        if os.environ.get("FLYWHEEL_WAIT_FOR_RESOURCES") == "1":
            return 1
        shown = ", ".join(f"{v:g} {k}" for k, v in need.items())
        cluster = ", ".join(f"{have.get(k, 0):g} {k}" for k in need)
        raise ClusterError(
            f"one trial needs {shown}, the cluster has {cluster} (fewer --workers or "
            "--cpus-per-worker; an autoscaling cluster: FLYWHEEL_WAIT_FOR_RESOURCES=1)"
        )
    return max(1, fits)


# --------------------------------------------------------------------------- results


@dataclass
class TrialRow:
    trial: str
    params: dict
    status: str  # done, stopped early (ASHA), error: ..., not run
    metrics: dict


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def status_of(error, metrics: dict, metric: str) -> str:
    if error is not None:
        lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
        return "error: " + " ".join((lines[-1] if lines else type(error).__name__).split())[:200]
    if metric in metrics:
        return "done"
    if metrics:
        return "stopped early (ASHA)"
    return "not run"


def best_row(rows: list[TrialRow], metric: str) -> TrialRow | None:
    scored = [r for r in rows if _number(r.metrics.get(metric)) is not None]
    return max(scored, key=lambda r: r.metrics[metric]) if scored else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_columns(kind: Kind, rows: list[TrialRow]) -> list[str]:
    params = [p.name for p in kind.params if any(p.name in r.params for r in rows)]
    metrics = [m for m in kind.metrics if any(m in r.metrics for r in rows)]
    return ["trial", *params, *metrics, "status"]


def _values(row: TrialRow, columns: list[str]) -> list:
    out = []
    for c in columns:
        if c == "trial":
            out.append(row.trial)
        elif c == "status":
            out.append(row.status)
        elif c in row.params:
            out.append(row.params[c])
        else:
            out.append(row.metrics.get(c))
    return out


def results_csv(kind: Kind, rows: list[TrialRow]) -> str:
    columns = table_columns(kind, rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in _values(row, columns)])
    return buf.getvalue()


def results_table(kind: Kind, rows: list[TrialRow]) -> str:
    """The results as an aligned text table (the best trial by the kind's metric marked *)."""
    columns = table_columns(kind, rows)
    best = best_row(rows, kind.metric)
    cells = [[_cell(v) for v in _values(r, columns)] for r in rows]
    marks = ["*" if best is not None and r is best else " " for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for mark, line in zip(marks, cells, strict=True):
        lines.append(f"{mark} " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def metric_figure(rows: list[dict], params: list[str], metric: str, title: str):
    """The metric against the first parameter; one line per value of the other parameters.

    A trial without the metric (stopped early by ASHA, or failed) is a dotted vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    x_name, others = params[0], params[1:]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r["params"].get(o) for o in others), []).append(r)
    for key, members in groups.items():
        points = sorted(
            (m["params"][x_name], m["metrics"][metric])
            for m in members
            if _number(m["metrics"].get(metric)) is not None
        )
        label = ", ".join(f"{o}={_short(v)}" for o, v in zip(others, key, strict=True)) or None
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=label)
        for x in sorted(m["params"][x_name] for m in members if metric not in m["metrics"]):
            ax.axvline(x, color="grey", ls=":", lw=1)  # no metric: stopped early or failed
    ax.set_xlabel(x_name)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    if any(k for k in groups if any(v is not None for v in k)):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- trial bodies


def copy_dataset(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A private copy of a dataset: videos hard-linked (copied across file systems), every
    other file copied. Built beside `dst` and renamed into place, so a copy interrupted halfway
    is started again, and a finished one is kept."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(a: str, b: str) -> None:
        if "videos" in Path(a).relative_to(src).parts[:1]:
            try:
                os.link(a, b)
                return
            except OSError:
                pass
        shutil.copy2(a, b)

    shutil.copytree(src, tmp, copy_function=link_or_copy)
    os.replace(tmp, dst)
    return dst


def _quiet(*_args, **_kwargs) -> None:
    pass


def outside_trial(fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)` in a Ray task outside the trial's placement group.

    Tune places a trial in a placement group that captures the tasks it starts; the trial's
    bundle holds no CPU (module docstring), so the 1-CPU tasks of labeling and evaluation
    could never be placed in it. A task scheduled with the default strategy is not captured,
    and neither are the tasks it starts. It reserves no CPU itself: its tasks reserve theirs.
    """
    import ray

    task = ray.remote(fn).options(num_cpus=0, scheduling_strategy="DEFAULT", max_retries=0)
    return ray.get(task.remote(*args, **kwargs))


def awbc_trial(config: dict, setup: dict) -> None:
    """One AWBC trial: copy, label, train (Tune sees the reports), evaluate, report."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.evaluation.driver import EvalConfig
    from pipelines.evaluation.driver import run as evaluate
    from pipelines.label import LabelConfig
    from pipelines.label import run as label
    from pipelines.policy.driver import TrainPolicyConfig
    from pipelines.policy.driver import run as train

    params = {k: config[k] for k in setup["params"] if k in config}
    folder = Path(setup["trials_dir"]) / trial_name(params)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = copy_dataset(setup["dataset"], folder / "dataset")
    labeled = folder / "labeled.json"
    label_cfg = LabelConfig(
        str(dataset),
        threshold=float(params["threshold"]),
        discretion_type="n_slices" if "n_slices" in params else "binary",
        n_slices=int(params.get("n_slices", 10)),
        mlflow=False,
    )
    if not labeled.exists():  # labeling is a commit: a killed one is finished by the rerun
        outside_trial(label, label_cfg, out=_quiet)
        atomic_write_json(labeled, asdict(label_cfg))
    trained = train(
        TrainPolicyConfig(
            str(dataset),
            workers=setup["workers"],
            cpus_per_worker=setup["cpus_per_worker"],
            gpus_per_worker=setup["gpus_per_worker"],
            steps=setup["steps"],
            checkpoint_every=setup["every"],
            batch_size=setup["batch_size"],
            image_size=setup["image_size"],
            name="policy",
            storage=str(folder / "runs"),
            max_failures=1,
            mlflow=False,
        ),
        callbacks=[TuneReportCallback()],
    )
    evaluated = outside_trial(
        evaluate,
        EvalConfig(
            trained.checkpoint,
            episodes=setup["eval_episodes"],
            seed=setup["eval_seed"],
            cfg_scale=float(params.get("cfg_scale", 1.0)),
            videos=0,
            mlflow=False,
            report=str(folder / "eval.json"),
        ),
        out=_quiet,
    )
    s = evaluated.arms[0].summary()
    ray.tune.report(
        {
            "success_rate": s["success_rate"],
            "successes": s["successes"],
            "episodes": s["episodes"],
            "ci95_low": s["ci95"][0],
            "ci95_high": s["ci95"][1],
            "l1": float(trained.metrics.get("l1", math.nan)),
            "heldout_l1": float(trained.metrics.get("heldout_l1", math.nan)),
            "step": trained.step,
            "checkpoint": trained.checkpoint,
        }
    )


def threshold_trial(config: dict, probs=None, labels=None) -> None:
    """One reward-threshold trial: the metrics of the shared scores at its threshold."""
    import ray.tune

    from pipelines.classifier.metrics import binary_metrics

    ray.tune.report(binary_metrics(probs, labels, float(config["threshold"])))


def score_held_out(checkpoint: str, dataset: str) -> tuple:
    """(probabilities, labels, episodes scored) of the classifier on its held-out frames.

    The checkpoint's validation and test episodes when `dataset` is the one it was trained on;
    every labeled episode of any other dataset. Labels as at training (next.reward or the
    success-frames CSV).
    """
    import numpy as np

    from pipelines.classifier.data import Frames, load_frames
    from pipelines.classifier.driver import predict, read_labels
    from pipelines.classifier.model import load_checkpoint
    from pipelines.dataset import LeRobotDataset

    model, config, meta = load_checkpoint(checkpoint)
    ds = LeRobotDataset(dataset)
    missing = [c for c in config.cameras if c not in ds.camera_keys]
    if missing:
        raise DatasetError(f"{ds.root}: no camera {missing[0]!r} (the classifier's cameras)")
    source = meta.get("labels", "next.reward")
    csv_path = None if source == "next.reward" or not Path(str(source)).exists() else source
    same = Path(meta.get("dataset", "")).resolve() == ds.root.resolve()
    held = sorted(set(meta.get("validation_episodes", [])) | set(meta.get("test_episodes", [])))
    episodes = held if same and held else None
    labels, _, _ = read_labels(ds, csv_path, episodes)
    if not labels:
        raise DatasetError(f"{ds.root}: no labeled episodes to score")
    parts = [load_frames(ds, labels[e], config.cameras, config.image_size) for e in sorted(labels)]
    frames = Frames.concat(parts, len(config.cameras), config.image_size)
    probs = predict(model, frames, "cpu")
    return probs, np.asarray(frames.labels, bool), sorted(labels)


def _check_hilserl_options(cfg: SweepConfig) -> None:
    try:
        from pipelines.hilserl import HilserlConfig
    except ImportError:
        raise DatasetError(
            "sweep hilserl: this build has no HIL-SERL job (pipelines.hilserl)"
        ) from None
    known = set(HilserlConfig.__dataclass_fields__)
    owned = {"bc_weight", "online_ratio", "name", "storage", "mlflow", "ray_address", "quiet"}
    for key in cfg.hilserl:
        if key not in known or key in owned:
            raise DatasetError(f"hilserl option {key!r}: not an option a trial may set")


def _evaluate_hilserl(cfg):
    """eval-policy on a HIL-SERL checkpoint (in the task's process: its loader registered)."""
    from pipelines.evaluation.driver import run as evaluate

    with contextlib.suppress(ImportError):  # registers the hilserl kind with eval-policy
        import pipelines.rl.eval_loader  # noqa: F401
    return evaluate(cfg, out=_quiet)


def hilserl_trial(config: dict, setup: dict) -> None:
    """One HIL-SERL trial: a run with the trial's bc_weight / online_ratio, then eval-policy."""
    import ray.tune

    from pipelines.evaluation.driver import EvalConfig
    from pipelines.hilserl import HilserlConfig
    from pipelines.hilserl import run as hilserl

    params = {k: config[k] for k in setup["params"] if k in config}
    folder = Path(setup["trials_dir"]) / trial_name(params)
    folder.mkdir(parents=True, exist_ok=True)
    result = outside_trial(  # its learner may ask for a GPU, which the trial's bundle lacks
        hilserl,
        HilserlConfig(
            **setup["hilserl"],
            **{k: float(v) for k, v in params.items()},
            name="hilserl",
            storage=str(folder / "runs"),
            mlflow=False,
            quiet=True,
        ),
    )
    evaluated = outside_trial(
        _evaluate_hilserl,
        EvalConfig(
            result.checkpoint,
            episodes=setup["eval_episodes"],
            seed=setup["eval_seed"],
            videos=0,
            mlflow=False,
            report=str(folder / "eval.json"),
        ),
    )
    s = evaluated.arms[0].summary()
    ray.tune.report(
        {
            "success_rate": s["success_rate"],
            "successes": s["successes"],
            "episodes": s["episodes"],
            "ci95_low": s["ci95"][0],
            "ci95_high": s["ci95"][1],
            "env_steps": int(result.status.get("env_steps", 0)) if result.status else 0,
            "checkpoint": result.checkpoint,
        }
    )


# --------------------------------------------------------------------------- the driver


@dataclass
class SweepResult:
    rows: list[TrialRow]
    kind: Kind
    folder: Path
    concurrency: int
    resumed: bool
    seconds: float
    csv_path: Path
    png_path: Path
    mlflow_run: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_spec(folder: Path, spec: dict) -> bool:
    """True if the sweep exists with this spec; a DatasetError if it exists with another."""
    path = folder / "sweep.json"
    if not path.exists():
        return False
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable ({e})") from None
    differ = [
        f"{k} {previous.get(k)!r} (this command: {v!r})"
        for k, v in spec.items()
        if previous.get(k) != v
    ]
    if differ:
        raise DatasetError(
            f"{folder}: sweep {folder.name!r} was started with other settings: "
            f"{'; '.join(differ)}; choose another --name"
        )
    return True


def _asha(kind: Kind, cfg: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler

    if kind.name == "awbc":  # the training L1 of every checkpoint report, then the evaluation
        reports = math.ceil(cfg.steps / cfg.every) + 1
        metric, mode = "l1", "min"
    else:
        reports, metric, mode = 1, kind.metric, "max"
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=max(reports, 1),
        grace_period=min(cfg.grace_period, max(reports, 1)),
        reduction_factor=cfg.reduction_factor,
    )


def run(cfg: SweepConfig, out: Callable = print) -> SweepResult:
    t0 = time.time()
    from pipelines.runtime.tracking import check_tracking_uri

    kind = check_config(cfg)
    check_job_output(cfg.storage, "--storage")
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    folder = cfg.sweep_dir
    resumed = check_spec(folder, cfg.spec)
    trials = grid(cfg.space)
    params = list(cfg.space)
    if kind.name == "awbc":
        _check_awbc_dataset(cfg.inputs[0])
    elif kind.name == "reward-threshold":
        from pipelines.classifier.model import KIND as CLASSIFIER
        from pipelines.runtime.training import read_meta

        read_meta(cfg.inputs[0], CLASSIFIER)  # a classifier checkpoint, before Ray starts

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune boxes on the job's console
    import ray.tune

    from pipelines.runtime.cluster import connect

    have = connect(cfg.ray_address, data=kind.name == "awbc")
    n = concurrency(have, trial_needs(cfg), len(trials), cfg.max_concurrent_trials)
    setup = {
        "params": params,
        "trials_dir": str(folder / "trials"),
        "eval_episodes": cfg.eval_episodes,
        "eval_seed": cfg.eval_seed,
    }
    if kind.name == "awbc":
        setup.update(
            dataset=str(Path(cfg.inputs[0]).resolve()),
            workers=cfg.workers,
            cpus_per_worker=cfg.cpus_per_worker,
            gpus_per_worker=cfg.gpus_per_worker,
            steps=cfg.steps,
            every=cfg.every,
            batch_size=cfg.batch_size,
            image_size=cfg.image_size,
        )
        trainable = ray.tune.with_parameters(awbc_trial, setup=setup)
    elif kind.name == "reward-threshold":
        out(f"Scoring the held-out frames of {cfg.inputs[1]} once ...")
        probs, labels, episodes = score_held_out(*cfg.inputs)
        out(f"  {len(probs)} frames of {len(episodes)} episodes, {int(labels.sum())} success")
        trainable = ray.tune.with_parameters(threshold_trial, probs=probs, labels=labels)
    else:
        setup["hilserl"] = dict(cfg.hilserl)
        trainable = ray.tune.with_parameters(hilserl_trial, setup=setup)
    # The trial functions hold no CPU (module docstring): only a token of memory.
    resources = {"CPU": 1} if kind.name == "reward-threshold" else {"memory": 32 * 2**20}
    trainable = ray.tune.with_resources(trainable, resources)

    folder.mkdir(parents=True, exist_ok=True)
    if not resumed:
        atomic_write_json(folder / "sweep.json", cfg.spec)
    experiment = f"flywheel-sweep-{kind.name}"
    out(
        f"Sweep {cfg.sweep_name} ({kind.name}): {len(trials)} trials over "
        f"{', '.join(params)}, {n} at a time" + (" (resuming)" if resumed else "")
    )
    tuner = _tuner(cfg, kind, trainable, n, folder, experiment, mlflow_uri, resumed)
    grid_result = tuner.fit()
    rows = _rows(grid_result, kind, params, trials)

    csv_path, png_path = folder / "results.csv", folder / "metric.png"
    text = results_csv(kind, rows)
    atomic_write_text(csv_path, text)
    plain = [{"params": r.params, "metrics": r.metrics} for r in rows]
    title = f"{cfg.sweep_name}: {kind.metric} against {params[0]}"
    fig = metric_figure(plain, params, kind.metric, title)
    from pipelines.dataset import temp_path_for
    from pipelines.dataset.atomic import replace_durably

    tmp = temp_path_for(png_path)
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    replace_durably(tmp, png_path)
    result = SweepResult(rows, kind, folder, n, resumed, time.time() - t0, csv_path, png_path)
    if mlflow_uri:
        try:
            result.mlflow_run = _log_summary(experiment, cfg, kind, rows, text, plain, title)
        except TrackingError as e:
            result.warnings.append(f"warning: the results are written, but logging failed: {e}")
    return result


def _check_awbc_dataset(path: str) -> None:
    from pipelines.dataset import LeRobotDataset

    ds = LeRobotDataset(path)
    if not ds.episode_indices:
        raise DatasetError(f"{ds.root}: no episodes")
    if not ds.camera_keys:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")


def _tuner(cfg, kind, trainable, n, folder, experiment, mlflow_uri, resumed):
    import ray.tune

    path = str(folder)
    if resumed and ray.tune.Tuner.can_restore(path):
        return ray.tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    callbacks = []
    if mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        from pipelines.runtime.tracking import allow_store

        allow_store(mlflow_uri)
        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=mlflow_uri,
                experiment_name=experiment,
                tags={"sweep": cfg.sweep_name},
                save_artifact=False,
            )
        )

    def name_of(trial) -> str:
        return trial_name({k: trial.config[k] for k in cfg.space})

    return ray.tune.Tuner(
        trainable,
        param_space={k: ray.tune.grid_search(v) for k, v in cfg.space.items()},
        tune_config=ray.tune.TuneConfig(
            scheduler=_asha(kind, cfg),
            max_concurrent_trials=n,
            trial_name_creator=name_of,
            trial_dirname_creator=name_of,
        ),
        run_config=ray.tune.RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            callbacks=callbacks,
            verbose=0,
            failure_config=ray.tune.FailureConfig(max_failures=0),
        ),
    )


def _rows(grid_result, kind: Kind, params: list[str], trials: list[dict]) -> list[TrialRow]:
    found = {}
    for r in grid_result:
        p = {k: r.config[k] for k in params}
        metrics = {
            k: v for k, v in (r.metrics or {}).items() if k in kind.metrics or k == kind.metric
        }
        found[trial_name(p)] = TrialRow(
            trial_name(p), p, status_of(r.error, metrics, kind.metric), metrics
        )
    rows = []
    for p in trials:  # in grid order, every trial (one Tune never ran: "not run")
        name = trial_name(p)
        rows.append(found.get(name) or TrialRow(name, p, "not run", {}))
    return rows


def _log_summary(experiment, cfg, kind, rows, text, plain, title) -> str:
    from pipelines.runtime.tracking import TrackedRun

    tracked = TrackedRun(experiment)
    tracked.start(
        "summary",
        {
            "sweep": cfg.sweep_name,
            "kind": kind.name,
            "space": json.dumps(cfg.space),
            "trials": len(rows),
        },
    )
    best = best_row(rows, kind.metric)
    if best is not None:
        tracked.log_metrics({f"best_{kind.metric}": best.metrics[kind.metric]})
    tracked.log_text(text, "results.csv")
    tracked.log_figure(metric_figure, "metric.png", rows=plain, params=list(cfg.space),
                       metric=kind.metric, title=title)  # fmt: skip
    return tracked.finish()


# --------------------------------------------------------------------------- command line


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("kind", help=f"what to sweep: {', '.join(KINDS)}")
    p.add_argument("inputs", nargs="*", help="awbc: DATASET; reward-threshold: CHECKPOINT DATASET")
    p.add_argument("--config", default=None, help="a YAML file: parameters and options")
    g = p.add_argument_group("search space (comma-separated values; every combination a trial)")
    seen = set()
    for kind in KINDS.values():
        for param in kind.params:
            if param.flag not in seen:
                seen.add(param.flag)
                g.add_argument(param.flag, default=None, metavar="V1,V2,...")
    g = p.add_argument_group("every trial (awbc: train-policy and eval-policy settings)")
    d = SweepConfig("")
    for flag, typ, help_text in (
        ("--steps", int, f"training steps per trial (default {d.steps})"),
        ("--checkpoint-every", int, "steps between reports (default: steps / 5)"),
        ("--workers", int, f"DDP workers per trial (default {d.workers})"),
        ("--cpus-per-worker", int, f"default {d.cpus_per_worker}"),
        ("--gpus-per-worker", float, "default 0"),
        ("--batch-size", int, f"default {d.batch_size}"),
        ("--image-size", int, f"default {d.image_size}"),
        ("--eval-episodes", int, f"evaluation episodes per trial (default {d.eval_episodes})"),
        ("--eval-seed", int, f"first evaluation seed, the same for every trial ({d.eval_seed})"),
    ):
        g.add_argument(flag, type=typ, default=None, help=help_text)
    g = p.add_argument_group("Tune")
    g.add_argument("--name", default=None, help="the sweep's name (default sweep-<kind>)")
    g.add_argument("--storage", default=None, help=f"where sweeps go (default {d.storage})")
    g.add_argument("--max-concurrent-trials", type=int, default=None, help="default: the cluster")
    g.add_argument("--grace-period", type=int, default=None, help="ASHA's (default 1)")
    g.add_argument("--reduction-factor", type=int, default=None, help="ASHA's (default 3)")
    g.add_argument("--ray-address", default=None)
    g.add_argument("--no-mlflow", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The SweepConfig of parsed flags: the YAML file's settings, flags overriding them."""
    kind = KINDS.get(args.kind)
    if kind is None:
        raise DatasetError(f"kind {args.kind!r}: one of {', '.join(KINDS)}")
    space, options = read_config_file(args.config, kind) if args.config else ({}, {})
    values = vars(args)
    for name in dict.fromkeys(p.name for k in KINDS.values() for p in k.params):
        raw = values.get(name)
        if raw is None:
            continue
        param = kind.param(name)
        if param is None:
            flag = "--" + name.replace("_", "-")
            raise DatasetError(f"{flag}: not a parameter of a {kind.name} sweep")
        space[name] = parse_values(param, raw)
    for key in OPTIONS:
        if values.get(key) is not None:
            options[key] = values[key]
    ordered = {p.name: space[p.name] for p in kind.params if p.name in space}
    return SweepConfig(
        kind=kind.name,
        inputs=list(args.inputs),
        space=ordered,
        mlflow=not args.no_mlflow,
        **options,
    )


def main(argv: Sequence[str] | None = None, prog: str = "flywheel sweep") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        cfg = config_from_args(args)
        result = run(cfg)
    except Exception as e:  # the user's mistake, in the driver or the workers: one line
        cause = job_error(e)
        if cause is None:
            raise
        print(f"{prog}: error: {cause}", file=sys.stderr)
        return 2
    print(results_table(result.kind, result.rows))
    best = best_row(result.rows, result.kind.metric)
    if best is not None:
        print(f"Best: {best.trial} ({result.kind.metric} {best.metrics[result.kind.metric]:.4g})")
    print(f"Results: {result.csv_path}")
    print(f"Plot: {result.png_path}")
    for line in result.warnings:
        print(line, file=sys.stderr)
    if result.mlflow_run:
        print(result.mlflow_run)
    failed = [r.trial for r in result.rows if r.status.startswith("error")]
    if failed:
        print(
            f"{prog}: {len(failed)} trial(s) failed ({', '.join(failed)}); the same command "
            "again retries them and keeps the finished ones",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.sweep"))
