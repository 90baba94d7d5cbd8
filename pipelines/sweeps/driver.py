"""`run(config)`: one sweep on Ray Tune, Train V2 inside; the results table, plot and MLflow.

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
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ray.tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler

from pipelines.dataset import atomic_write_json, atomic_write_text
from pipelines.runtime.cluster import check_job_output, connect
from pipelines.runtime.tracking import TrackedRun, TrackingError, allow_store, check_tracking_uri
from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.kinds import KINDS, check_config, check_spec
from pipelines.sweeps.report import (
    TrialRow,
    best_row,
    metric_figure,
    results_csv,
    status_of,
    write_figure,
)
from pipelines.sweeps.resources import concurrency
from pipelines.sweeps.space import grid, trial_name


@dataclass
class SweepResult:
    rows: list[TrialRow]
    kind: SweepKind
    folder: Path
    concurrency: int
    resumed: bool
    seconds: float
    csv_path: Path
    png_path: Path
    mlflow_run: str | None = None
    warnings: list[str] = field(default_factory=list)


def run(
    cfg: SweepConfig, out: Callable = print, kinds: Mapping[str, SweepKind] = KINDS
) -> SweepResult:
    """The sweep `cfg` on Ray Tune (resumed if it exists); `kinds`: the kinds it may run."""
    t0 = time.time()
    kind = check_config(cfg, kinds)
    check_job_output(cfg.storage, "--storage")
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    folder = cfg.sweep_dir
    spec = kind.spec(cfg)
    resumed = check_spec(folder, spec)
    trials = grid(cfg.space)
    params = list(cfg.space)
    kind.check_inputs(cfg)

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune boxes on the job's console
    have = connect(cfg.ray_address, data=kind.uses_ray_data)
    n = concurrency(have, kind.trial_needs(cfg), len(trials), cfg.tune.max_concurrent_trials)
    trainable = ray.tune.with_resources(
        kind.trainable(cfg, params, out), dict(kind.trial_resources)
    )

    folder.mkdir(parents=True, exist_ok=True)
    if not resumed:
        atomic_write_json(folder / "sweep.json", spec)
    experiment = f"flywheel-sweep-{kind.name}"
    out(
        f"Sweep {cfg.sweep_name} ({kind.name}): {len(trials)} trials over "
        f"{', '.join(params)}, {n} at a time" + (" (resuming)" if resumed else "")
    )
    tuner = _tuner(cfg, kind, trainable, n, experiment, mlflow_uri, resumed)
    rows = _rows(tuner.fit(), kind, params, trials)

    csv_path, png_path = folder / "results.csv", folder / "metric.png"
    text = results_csv(kind, rows)
    atomic_write_text(csv_path, text)
    plain = [{"params": r.params, "metrics": r.metrics} for r in rows]
    title = f"{cfg.sweep_name}: {kind.metric} against {params[0]}"
    write_figure(metric_figure(plain, params, kind.metric, title), png_path)
    result = SweepResult(rows, kind, folder, n, resumed, time.time() - t0, csv_path, png_path)
    if mlflow_uri:
        try:
            result.mlflow_run = _log_summary(experiment, cfg, kind, rows, text, plain, title)
        except TrackingError as e:
            result.warnings.append(f"warning: the results are written, but logging failed: {e}")
    return result


def _asha(kind: SweepKind, cfg: SweepConfig) -> ASHAScheduler:
    reports, metric, mode = kind.schedule(cfg)
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=max(reports, 1),
        grace_period=min(cfg.tune.grace_period, max(reports, 1)),
        reduction_factor=cfg.tune.reduction_factor,
    )


def _tuner(cfg, kind, trainable, n, experiment, mlflow_uri, resumed) -> ray.tune.Tuner:
    folder = cfg.sweep_dir
    path = str(folder)
    if resumed and ray.tune.Tuner.can_restore(path):
        return ray.tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    callbacks = []
    if mlflow_uri:
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


def _rows(grid_result, kind: SweepKind, params: list[str], trials: list[dict]) -> list[TrialRow]:
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
