"""`flywheel hilserl`'s driver: check the inputs, start the learner, the recorder and the
collectors as Ray actors, watch them until the run has its env steps, and report.

Topology (all Ray actors; this module only checks the inputs, starts them and reports):

    Collectors 0..N-1 (collector)  --episodes (object store)-->  HilserlLearner (learner)
      each an env (simulator, emulated or                          replay buffers, DrQ-v2+BC,
      real SO-101) and an operator   <--weights, between episodes--  Q monitor, checkpoints
                 \\--the same episode objects-->  OnlineRecorder (recording): a dataset

`run(HilserlConfig)` is the entry point (`flywheel hilserl`, the demo, the sweep's trials);
the job's module docstring describes the options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field

import ray

from actors.hilserl.checks import (
    ResolvedRun,
    agent_config,
    check_inputs,
    check_replay_memory,
    check_reward_endpoint,
    check_run,
    episode_spec,
    obs_spec,
    on_cluster,
    run_settings,
)
from actors.hilserl.collector import collector_actor
from actors.hilserl.config import HilserlConfig
from actors.hilserl.learner import learner_actor
from actors.hilserl.progress import numeric, progress_line
from actors.hilserl.recording import OnlineRecorder
from actors.hilserl.report import write_figures
from actors.priority import at_normal_priority
from pipelines.dataset import atomic_write_json
from pipelines.runtime.cluster import connect
from pipelines.runtime.tracking import TrackedRun, check_tracking_uri
from pipelines.simulator.tasks import TASKS

STRAGGLER_S = 600  # how long the end waits for collectors to finish their last episode
RECORDING_STALL_S = 600  # how long the end waits for the recorder to write its next episode


@dataclass
class HilserlResult:
    checkpoint: str
    run_dir: str
    status: dict
    history: dict
    seconds: float
    resumed_from: dict | None
    dataset: str | None
    mlflow_run: str | None = None
    figures: list[str] = field(default_factory=list)


def _say(cfg: HilserlConfig, line: str) -> None:
    if not cfg.quiet:
        print(line, flush=True)


def run(cfg: HilserlConfig) -> HilserlResult:
    """A HIL-SERL run (module docstring); a one-line DatasetError for the user's mistakes, a
    RuntimeError when the learner failed or every collector is gone."""
    t0 = time.time()
    inputs = check_inputs(cfg)  # everything that needs no cluster: before Ray starts
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    if not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
        # Ray nices its worker processes (15); here they are the job's real work: the learner
        # and the collectors' control loops must not starve behind everything else
        os.environ.setdefault("RAY_worker_niceness", "0")
    resources = connect(cfg.ray_address)
    gpu = resources.get("GPU", 0) >= 1
    res = on_cluster(cfg, inputs, gpu)
    memory = _largest_node_memory() if cfg.ray_address or os.environ.get("RAY_ADDRESS") else 0
    if memory:  # a remote cluster: the node's memory, known now
        check_replay_memory(cfg, obs_spec(res), memory)
    settings = run_settings(cfg, res)
    previous = check_run(cfg, settings)
    if cfg.collector.reward == "classifier" and not cfg.collector.reward_url:
        check_reward_endpoint(cfg, res.cameras, res.image_size)  # a Serve app: on the cluster
    steps = cfg.learner.steps
    if previous is not None and previous.get("env_steps", 0) >= steps:
        _say(cfg, f"{cfg.run_name} already has {previous['env_steps']} env steps (--steps {steps})")
        return HilserlResult(
            previous["path"], str(cfg.run_dir), {}, {}, time.time() - t0, None, None
        )
    return _run(cfg, res, settings, mlflow_uri, t0)


def _run(cfg: HilserlConfig, res: ResolvedRun, settings: dict, mlflow_uri, t0: float):
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = cfg.run_dir.resolve()
    agent = agent_config(cfg, res)
    bound = agent.q_bound
    learner_options = {"num_cpus": 0}
    if res.gpu:
        learner_options["num_gpus"] = 1
    tracked = TrackedRun("flywheel-hilserl") if mlflow_uri else None
    source = res.encoder_spec[len("frozen:") :] if res.frozen else None
    learner = learner_actor(**learner_options).remote(
        cfg.learner,
        agent,
        obs_spec(res),
        str(run_dir),
        settings,
        "auto" if res.gpu else "cpu",
        source,
    )
    actors = [learner]
    recorder = None
    dataset = None
    try:
        status = ray.get(learner.status.remote())
        resumed = ray.get(learner.resumed.remote())
        if resumed:
            _say(
                cfg,
                f"Resuming {cfg.run_name} from {resumed['checkpoint']}: {resumed['env_steps']} "
                f"env steps, {resumed['learner_steps']} learner steps, replay "
                f"{resumed['online']} online + {resumed['offline']} offline transitions",
            )
        elif status["offline_loaded"]:
            _say(cfg, f"Offline buffer seeded with {status['offline_loaded']} transitions")
        if cfg.record:
            dataset = str(run_dir / "episodes")
            recorder = (
                ray.remote(at_normal_priority(OnlineRecorder))
                .options(num_cpus=0)
                .remote(
                    dataset,
                    cfg.collector.fps,
                    TASKS[cfg.collector.task].text,
                    {k: (res.image_size, res.image_size) for k in res.cameras},
                    settings["max_ee_step"],
                    cfg.record_format,
                )
            )
            actors.append(recorder)
        spec = episode_spec(cfg, res)
        robot = dataclasses.replace(cfg.robot, robot=res.robot)
        n = 1 if res.robot == "real" else cfg.collector.collectors
        collector_cls = collector_actor(num_cpus=0)
        collectors = [
            collector_cls.remote(
                i, learner, cfg.collector, spec, agent, robot, recorder, cfg.learner.seed
            )
            for i in range(n)
        ]
        actors += collectors
        if tracked is not None:
            tracked.start(cfg.run_name, {**settings, "collectors": n, "steps": cfg.learner.steps})
        runs = {c.run.remote(): i for i, c in enumerate(collectors)}
        _say(
            cfg,
            f"HIL-SERL {cfg.run_name}: {n} collector(s) ({res.robot}), encoder {res.encoder_spec}, "
            f"{cfg.learner.steps} env steps, bc_weight {cfg.agent.bc_weight}, reward "
            f"{cfg.collector.reward}, Q bound {bound:g}",
        )
        try:
            status = _watch(cfg, learner, runs, tracked, bound)
        except KeyboardInterrupt:  # Ctrl-C: the buffers and weights as they are, then stop
            print("interrupted: writing the final checkpoint (Ctrl-C again to leave it)")
            ray.get(learner.finish.remote(), timeout=300)
            raise
        final = ray.get(learner.finish.remote())
        status = ray.get(learner.status.remote())
        history = ray.get(learner.history.remote())
        if recorder is not None:  # the recorder encodes videos: it may lag on a busy machine
            for line in _wait_for_recording(
                lambda: ray.get(recorder.progress.remote(), timeout=RECORDING_STALL_S),
                status["episodes"] - _resumed_episodes(resumed),
                dataset,
            ):
                _say(cfg, line)
        figures = write_figures(cfg, run_dir, history, bound, tracked)
        summary = {k: v for k, v in status.items() if k != "warnings"}
        atomic_write_json(run_dir / "summary.json", {"status": summary, "checkpoint": final})
        mlflow_run = None
        if tracked is not None:
            tracked.log_metrics(numeric(status), step=int(status["env_steps"]))
            mlflow_run = tracked.finish()
            tracked = None
        return HilserlResult(
            final, str(run_dir), status, history, time.time() - t0, resumed, dataset,
            mlflow_run, figures,
        )  # fmt: skip
    finally:
        if tracked is not None:
            tracked.abort()
        closing = [a.close.remote() for a in actors[1:]]  # recorder, collectors: arms torque off
        with contextlib.suppress(Exception):
            ray.wait(closing, num_returns=len(closing), timeout=30)
        for actor in reversed(actors):
            with contextlib.suppress(Exception):
                ray.kill(actor)


def _wait_for_recording(
    progress, sent: int, dataset: str, stall_s: float = RECORDING_STALL_S
) -> list[str]:
    """Wait until the recorder has written the run's `sent` episodes (`progress()`: the
    recorder's `(written, lost, errors)`), as long as it keeps writing; a RuntimeError (the
    job exits 1, the learner's checkpoint kept) if it failed, is gone, or wrote nothing for
    `stall_s`: recorded episodes are never dropped silently. Returns warning lines (episodes
    lost with a collector that died before the recorder read them: the learner has them)."""
    last, since = None, time.monotonic()
    while True:
        try:
            written, lost, errors = progress()
        except (ray.exceptions.RayError, TimeoutError) as e:
            why = " ".join(str(e).split())[-200:]
            raise RuntimeError(
                f"the recorder of {dataset} is gone before writing the run's {sent} episodes "
                f"({why}); the learner's checkpoint is kept"
            ) from None
        if errors:
            raise RuntimeError(
                f"the recording {dataset} failed ({errors[0]}); it holds {written} of the run's "
                f"{sent} episodes; the learner's checkpoint is kept"
            )
        if written + lost >= sent:
            return [
                f"warning: {lost} episode(s) were lost with their collector before the recorder "
                f"read them; {dataset} holds {written} of the run's {sent} episodes"
            ] if lost else []  # fmt: skip
        if (written, lost) != last:
            last, since = (written, lost), time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise RuntimeError(
                f"the recorder wrote no episode in {stall_s:.0f} s: {dataset} holds {written} of "
                f"the run's {sent} episodes; the learner's checkpoint is kept"
            )
        time.sleep(0.2)


def _largest_node_memory() -> int:
    """The most memory Ray may schedule on one alive node (its `memory` resource)."""
    return int(max((n["Resources"].get("memory", 0) for n in ray.nodes() if n["Alive"]), default=0))


def _resumed_episodes(resumed: dict | None) -> int:
    return int(resumed["episodes"]) if resumed else 0


def _watch(cfg: HilserlConfig, learner, runs: dict, tracked, bound: float) -> dict:
    """Poll the learner until the run has its steps and every collector has stopped (after the
    episode it was in); log, print, notice dead collectors."""
    last_print = 0.0
    status: dict = {}
    pending = dict(runs)
    dead, last_reason = 0, ""
    stragglers_since = None
    while True:
        finished = ray.get(learner.wait.remote(1.0))
        status = ray.get(learner.status.remote())
        for line in status["warnings"]:
            _say(cfg, line)
        if status["error"]:
            raise RuntimeError(f"the learner failed: {status['error']}")
        if pending:
            ready, _ = ray.wait(list(pending), timeout=0)
            for ref in ready:
                index = pending.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as e:
                    dead += 1
                    why = " ".join(str(getattr(e, "cause", None) or e).split())[-300:]
                    last_reason = f"collector {index}: {why}"
                    _say(cfg, f"warning: collector {index} is gone for good: {why}")
        if tracked is not None:
            tracked.log_metrics(numeric(status), step=int(status["env_steps"]))
        now = time.monotonic()
        if finished and pending and stragglers_since is None:
            stragglers_since = now  # collectors finishing the episode they were in
        if now - last_print > 10 or (finished and not pending):
            last_print = now
            _say(cfg, progress_line(status, cfg.learner.steps, bound))
        if finished and not pending:
            return status
        if finished and now - stragglers_since > STRAGGLER_S:
            _say(cfg, f"warning: {len(pending)} collector(s) did not stop in {STRAGGLER_S} s")
            return status
        if not pending and dead and not status["done"] and status["env_steps"] < cfg.learner.steps:
            raise RuntimeError(
                f"every collector is gone (last: {last_reason}); the learner's last checkpoint "
                "is kept"
            )
