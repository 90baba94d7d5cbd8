"""`run(EvalConfig)`: policies rolled out in the simulator, scored on paired seeds.

* **Any policy** with `reset()` and `act(observation) -> action` (the `Policy` protocol) plugs
  in. Where it comes from is a **source**: `controller:<name>` for the scripted controllers
  (expert, hesitant, noisy, failing), or a checkpoint folder (or a run folder: its latest
  checkpoint), loaded by the loader registered for its kind (`register_loader("policy")` in
  `sources`; a later model registers its own kind without touching this module). A
  checkpoint of a kind nobody registered (an estimator) is refused in one line.
* **The simulator settings** (task, image size, fps, action mode) come from the checkpoint's
  config, so a policy is rolled out in the conditions it was trained for; every arm of one
  evaluation must agree on them (controllers take the checkpoints'), and a checkpoint whose
  state or action dimensions or cameras the simulator does not have is refused up front.
* **Units**: the simulator's joints are in degrees (gripper 0..100). A policy trained in other
  units (LeRobot's range_m100_100: its checkpoint's `units`) sees its observations converted
  and its joint actions converted back with the arm's calibration (`--calibration FILE|ID`),
  or is refused up front in one line without one.
* **Seeds** `--seed` .. `--seed + N - 1` for every arm: episode k of each arm starts from the
  same cube pose, so arms are compared seed by seed (paired). An episode succeeds if
  `info["success"]` is true at any step before the time limit truncates it (lerobot-eval's
  rule); its steps to success are the environment steps taken until then.
* **Ray tasks**: each arm's seeds are split into groups, one Ray task per group (1 CPU, one
  torch thread), all arms at once; results are gathered by seed. `--one-process` runs the
  same episodes in this process, without Ray (the benchmark's baseline, and for debugging).
* **Report**: per arm the success rate with its Wilson 95 % interval and the mean steps to
  success; with `--compare`, each further arm's paired difference from the first with an exact
  McNemar p-value. `--report PATH` writes it as JSON (atomically); MLflow gets the numbers, the
  report and the first `--videos` episodes of every arm as mp4 files (front | wrist camera).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import ray

from pipelines.dataset import DatasetError, atomic_write_json
from pipelines.dataset.calibration import load_calibration_option
from pipelines.evaluation.config import (
    ArmOptions,
    EnvSettings,
    EvalConfig,
    check_cfg_scale,
    parse_arm,
)
from pipelines.evaluation.episodes import run_group
from pipelines.evaluation.report import ArmResult, EvalResult, compare, log_evaluation
from pipelines.evaluation.sources import LoadedPolicy, load_source
from pipelines.runtime.cluster import check_job_output, cluster_cpus, connect
from pipelines.runtime.tracking import check_tracking_uri


def _validate(cfg: EvalConfig) -> list[LoadedPolicy]:
    if cfg.episodes < 1:
        raise DatasetError(f"--episodes {cfg.episodes}: at least 1")
    if cfg.seed < 0:
        raise DatasetError(f"--seed {cfg.seed}: at least 0")
    if cfg.videos < 0:
        raise DatasetError(f"--videos {cfg.videos}: at least 0")
    if cfg.n_action_steps is not None and cfg.n_action_steps < 1:
        raise DatasetError(f"--n-action-steps {cfg.n_action_steps}: at least 1")
    check_cfg_scale(cfg.cfg_scale, "--cfg-scale")
    check_job_output(cfg.report, "--report")  # before the evaluation, not after it
    arm = None
    if cfg.calibration is not None:
        arm = load_calibration_option(cfg.calibration, "--calibration")
    first = ArmOptions(cfg.prompt, cfg.cfg_scale, cfg.n_action_steps, cfg.name, arm)
    arms = [(cfg.checkpoint, first)] + [parse_arm(s) for s in cfg.compare]
    for _, options in arms:
        options.calibration = arm
    loaded = [load_source(src, opts) for src, opts in arms]
    names = [p.name for p in loaded]
    for i, n in enumerate(names):  # names identify arms in the report: make them unique
        if names.count(n) > 1:
            loaded[i].name = f"{n} ({i + 1})"
    return loaded


def settings_for(loaded: list[LoadedPolicy]) -> EnvSettings:
    """The one simulator setting every arm runs in; a DatasetError if checkpoints disagree."""
    wanted = {p.name: p.env for p in loaded if p.env is not None}
    distinct = set(wanted.values())
    if len(distinct) > 1:
        shown = "; ".join(f"{n}: {asdict(e)}" for n, e in wanted.items())
        raise DatasetError(f"the arms were trained for different simulator settings ({shown})")
    return distinct.pop() if distinct else EnvSettings()


def run(cfg: EvalConfig, out=print) -> EvalResult:
    """Evaluate every arm on the same seeds (the module docstring); DatasetError for bad
    options or sources."""
    t0 = time.time()
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    loaded = _validate(cfg)
    env_settings = settings_for(loaded)
    probe = env_settings.make()
    for p in loaded:
        p.check(probe)
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    record = cfg.seed + min(cfg.videos, cfg.episodes) if cfg.mlflow else cfg.seed
    if cfg.one_process:
        results = [run_group(p, env_settings, seeds, record) for p in loaded]
    else:
        results = _run_on_ray(loaded, env_settings, seeds, record, cfg)
    arms = [
        ArmResult(p.name, p.source, getattr(p, "prompt", None), getattr(p, "cfg_scale", 1.0), r)
        for p, r in zip(loaded, results, strict=True)
    ]
    comparisons = [compare(arms[0], a) for a in arms[1:]]
    report = {
        "seeds": [seeds[0], seeds[-1]],
        "episodes": cfg.episodes,
        "env": asdict(env_settings),
        "mode": "one process" if cfg.one_process else "ray",
        "arms": [a.summary() for a in arms],
        "comparisons": comparisons,
    }
    seconds = time.time() - t0
    report["seconds"] = seconds
    if cfg.report:
        Path(cfg.report).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg.report, report)
    result = EvalResult(arms, comparisons, env_settings, seconds, report)
    if mlflow_uri:
        result.mlflow_run = log_evaluation(mlflow_uri, cfg, result)
    return result


def _run_on_ray(loaded, env_settings, seeds, record, cfg: EvalConfig):
    connect(cfg.ray_address)
    n_groups = max(1, min(len(seeds), cfg.groups_per_cpu * cluster_cpus() // len(loaded) or 1))
    groups = [g.tolist() for g in np.array_split(np.array(seeds), n_groups) if len(g)]
    task = ray.remote(num_cpus=1)(run_group)
    refs = []
    for p in loaded:
        shared = ray.put(p)
        refs.append([task.remote(shared, env_settings, g, record) for g in groups])
    return [[ep for part in ray.get(arm_refs) for ep in part] for arm_refs in refs]
