"""`flywheel hilserl`: HIL-SERL on Ray: collectors on robots, one learner, a Q monitor.

Topology (all Ray actors; this module only checks the inputs, starts them and reports):

    Collectors 0..N-1 (actors.hilserl)  --episodes (object store)-->  Learner (actors.hilserl)
      each an env (simulator, emulated or                                 replay buffers, DrQ-v2+BC,
      real SO-101) and an operator        <--weights, between episodes--  Q monitor, checkpoints
                 \\--the same episode objects-->  OnlineRecorder (actors.hilserl): a dataset

* **Sim** (`--env sim`, the default): each collector owns an `SO101Env` in end-effector-delta
  mode behind the normalizing wrapper, and the simulated operator, which takes over when the
  policy drifts and hands back. **Emulated SO-101** (`--robot emulated`): each collector drives
  its own emulated workcell through the real Feetech driver code (`FollowerArm`, `LeaderArm`,
  camera actors) and the servo emulator; a simulated operator's hand moves the leader arm.
  **Real arm** (`--follower-port/--leader-port`): one collector, the leader-arm takeover rule.
* **Reward**: the simulator's sparse reward (`--reward sim`) or the served classifier
  (`--reward classifier`: the Serve application `--reward-app`, through its handle, or an HTTP
  endpoint `--reward-url`), with `--terminate-on-success`.
* **Encoder**: `--encoder drqv2` (trainable, random shift; for GPU learners) or
  `--encoder frozen:CHECKPOINT` (an estimator's or classifier's image encoder, frozen; features
  computed once per frame in the collectors and kept in the replay buffer: what makes CPU
  learners practical). Without `--encoder`: `drqv2` when the cluster has a GPU for the learner;
  on CPUs the command asks for a frozen encoder (or an explicit `--encoder drqv2`).
* **Runs**: `--storage/--name` hold the checkpoints, the replay segments and the recorded
  dataset (`episodes/`); running the same command again resumes (buffers, weights, optimizers,
  step counters); a run name that holds another configuration is refused with the differences.
  MLflow gets the success rate, the intervention rate (intervened steps / steps over the last 20
  episodes), returns, losses, Q against its bound and the learning curves as PNGs.

Also `python -m pipelines.hilserl` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, atomic_write_json
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError
from pipelines.runtime.tracking import TrackingError, check_tracking_uri

KIND = "hilserl"
SIM_CAMERAS = ["observation.images.front", "observation.images.wrist"]
FRAMES_PER_EPISODE_HINT = 50

# Settings that define what a run trains; a resumed run must keep them (check_resume).
RESUME_KEYS = (
    "robot",
    "task",
    "fps",
    "image_size",
    "cameras",
    "encoder",
    "frame_stack",
    "hidden_dim",
    "feature_dim",
    "batch_size",
    "lr",
    "bc_weight",
    "bc_on",
    "utd_ratio",
    "online_ratio",
    "online_capacity",
    "offline_capacity",
    "offline_dataset",
    "reward",
    "terminate_on_success",
    "success_frames",
    "stddev_schedule",
    "clip_target_q",
    "updates_per_step",
    "seed",
)


@dataclass
class HilserlConfig:
    env: str = "sim"
    robot: str | None = None  # None: the simulator; "emulated"; "real" (from the ports)
    follower_port: str | None = None
    leader_port: str | None = None
    follower_id: str | None = None
    leader_id: str | None = None
    calibration_dir: str | None = None
    camera: list[str] = field(default_factory=list)  # real arm: NAME=SOURCE
    task: str = "reach_grasp"
    fps: int = 10
    image_size: int | None = None  # default: the frozen encoder's, else 64
    steps: int = 20_000
    collectors: int = 1
    encoder: str | None = None  # drqv2 | frozen:CHECKPOINT (default: module docstring)
    frame_stack: int = 1
    hidden_dim: int | None = None  # default: 1024 (DrQ-v2) on a GPU, 256 on CPUs
    feature_dim: int = 50
    batch_size: int = 256
    lr: float = 1e-4
    bc_weight: float = 0.5
    bc_on: str = "interventions"
    utd_ratio: int = 1
    updates_per_step: float = 1.0
    max_lag: int = 200
    online_ratio: float = 0.5
    online_capacity: int = 100_000
    offline_capacity: int = 100_000
    offline_dataset: str | None = None
    learning_starts: int = 100
    random_steps: int = 500
    push_every: int = 50
    checkpoint_every: int = 1000
    stddev_schedule: str = "linear(0.2,0.05,5000)"
    clip_target_q: bool = False
    q_alarm_patience: int = 100
    reward: str = "sim"
    reward_app: str = "reward"
    reward_url: str | None = None
    terminate_on_success: bool = True
    success_frames: int = 1
    operator: bool = True
    record: bool = True
    silent_after_s: float = 120.0
    name: str | None = None
    storage: str = "flywheel-runs"
    seed: int = 0
    learner_threads: int | None = None
    ray_address: str | None = None
    mlflow: bool = True
    quiet: bool = False

    @property
    def run_name(self) -> str:
        return self.name or "hilserl"

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.run_name


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


# --------------------------------------------------------------------------- checks


def _check_numbers(cfg: HilserlConfig) -> None:
    for name, value, low in (
        ("--steps", cfg.steps, 1),
        ("--collectors", cfg.collectors, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--utd-ratio", cfg.utd_ratio, 1),
        ("--frame-stack", cfg.frame_stack, 1),
        ("--feature-dim", cfg.feature_dim, 1),
        ("--online-capacity", cfg.online_capacity, 2),
        ("--offline-capacity", cfg.offline_capacity, 2),
        ("--push-every", cfg.push_every, 1),
        ("--checkpoint-every", cfg.checkpoint_every, 1),
        ("--q-alarm-patience", cfg.q_alarm_patience, 1),
        ("--learning-starts", cfg.learning_starts, 1),
        ("--random-steps", cfg.random_steps, 0),
        ("--max-lag", cfg.max_lag, 0),
        ("--fps", cfg.fps, 1),
        ("--success-frames", cfg.success_frames, 1),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if cfg.hidden_dim is not None and cfg.hidden_dim < 1:
        raise DatasetError(f"--hidden-dim {cfg.hidden_dim}: at least 1")
    if not (math.isfinite(cfg.online_ratio) and 0.0 <= cfg.online_ratio <= 1.0):
        raise DatasetError(f"--online-ratio {cfg.online_ratio}: a share between 0 and 1")
    for name, value in (
        ("--bc-weight", cfg.bc_weight),
        ("--updates-per-step", cfg.updates_per_step),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise DatasetError(f"{name} {value}: a number >= 0")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise DatasetError(f"--lr {cfg.lr}: must be positive")
    if not cfg.silent_after_s > 0:
        raise DatasetError(f"--silent-after {cfg.silent_after_s}: must be positive")
    if cfg.image_size is not None and not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")
    if cfg.env != "sim":
        raise DatasetError(f"--env {cfg.env!r}: 'sim' (a real or emulated arm: --robot)")
    if cfg.reward not in ("sim", "classifier"):
        raise DatasetError(f"--reward {cfg.reward!r}: sim or classifier")
    if cfg.bc_on not in ("interventions", "interventions+demos"):
        raise DatasetError(f"--bc-on {cfg.bc_on!r}: interventions or interventions+demos")
    from pipelines.simulator.world import TASK_STAGES

    if cfg.task not in TASK_STAGES:
        raise DatasetError(f"--task {cfg.task!r}: one of {sorted(TASK_STAGES)}")
    from pipelines.rl.agent import stddev

    try:
        stddev(cfg.stddev_schedule, 0)
    except ValueError as e:
        raise DatasetError(f"--stddev-schedule: {e}") from None


def _robot_kind(cfg: HilserlConfig) -> str:
    if cfg.follower_port or cfg.leader_port:
        if not (cfg.follower_port and cfg.leader_port):
            raise DatasetError("give both --follower-port and --leader-port (a real arm)")
        if cfg.robot not in (None, "real"):
            raise DatasetError(f"--robot {cfg.robot}: the ports name a real arm")
        return "real"
    if cfg.robot in (None, "sim"):
        return "sim"
    if cfg.robot == "emulated":
        return "emulated"
    raise DatasetError(f"--robot {cfg.robot!r}: emulated (or the ports of a real arm)")


@dataclass
class Resolved:
    """What the checks found: the settings every actor gets."""

    robot: str
    encoder_spec: str
    frozen: bool  # a frozen encoder (features in the replay buffer), else drqv2
    cameras: list[str]
    image_size: int
    hidden_dim: int
    gpu: bool
    frozen_dim: int = 0
    camera_sources: dict = field(default_factory=dict)


def _encoder(cfg: HilserlConfig) -> tuple[str, object | None]:
    spec = cfg.encoder
    if spec is None or spec == "drqv2":
        return "drqv2", None
    if spec.startswith("frozen:") and len(spec) > len("frozen:"):
        from pipelines.rl.features import load_frozen_encoder

        encoder = load_frozen_encoder(spec[len("frozen:") :])
        return f"frozen:{Path(encoder.source).resolve()}", encoder
    raise DatasetError(f"--encoder {spec!r}: drqv2 or frozen:CHECKPOINT")


def resolve(cfg: HilserlConfig, gpu: bool) -> Resolved:
    """Check the inputs that need no cluster; a one-line DatasetError for each problem."""
    _check_numbers(cfg)
    robot = _robot_kind(cfg)
    if robot == "real" and cfg.reward == "sim":
        raise DatasetError("a real arm has no simulator to reward it: use --reward classifier")
    from pipelines.robot import camera_sources

    sources = camera_sources(cfg.camera)
    if robot == "real" and not sources:
        raise DatasetError("a real arm needs its cameras: --camera front=0 --camera wrist=2")
    if cfg.encoder is None and not gpu:
        raise DatasetError(
            "--encoder: the cluster has no GPU for the learner, and the trainable drqv2 "
            "encoder is slow on CPUs (see the README's HIL-SERL benchmarks): give --encoder "
            "frozen:CHECKPOINT (an estimator or reward classifier), or --encoder drqv2"
        )
    spec, encoder = _encoder(cfg)
    env_cameras = list(sources) if robot == "real" else SIM_CAMERAS
    if encoder is not None:
        missing = [c for c in encoder.cameras if c not in env_cameras]
        if missing:
            raise DatasetError(
                f"--encoder {cfg.encoder}: camera {missing[0]!r} is not one of the env's "
                f"({', '.join(env_cameras)})"
            )
        cameras = list(encoder.cameras)
        image_size = cfg.image_size or encoder.image_size
    else:
        cameras = env_cameras
        image_size = cfg.image_size or 64
    hidden = cfg.hidden_dim or (1024 if gpu else 256)
    if cfg.offline_dataset:
        from pipelines.rl.offline import check_offline_dataset

        check_offline_dataset(cfg.offline_dataset, cameras)
    return Resolved(
        robot=robot,
        encoder_spec=spec,
        frozen=encoder is not None,
        cameras=cameras,
        image_size=image_size,
        hidden_dim=hidden,
        gpu=gpu,
        frozen_dim=encoder.feature_dim if encoder is not None else 0,
        camera_sources=sources,
    )


def run_settings(cfg: HilserlConfig, res: Resolved) -> dict:
    """The run's identity (kept in every checkpoint; a resume must match `RESUME_KEYS`)."""
    from pipelines.simulator.env import SO101Env

    settings = {k: v for k, v in asdict(cfg).items() if k in RESUME_KEYS}
    settings.update(
        robot=res.robot,
        encoder=res.encoder_spec,
        image_size=res.image_size,
        cameras=res.cameras,
        hidden_dim=res.hidden_dim,
        offline_dataset=str(Path(cfg.offline_dataset).resolve()) if cfg.offline_dataset else None,
    )
    extra = {
        "action_mode": "ee_delta",
        "max_ee_step": SO101Env(render_images=False).max_ee_step,
        "env": {
            "task": cfg.task,
            "image_size": res.image_size,
            "fps": cfg.fps,
            "action_mode": "ee_delta",
        },
    }
    return {**settings, **extra}


def check_run(cfg: HilserlConfig, settings: dict) -> dict | None:
    """The run's newest checkpoint meta if it exists (resume); a DatasetError if it trains
    something else."""
    from actors.hilserl.learner import KIND as LEARNER_KIND
    from pipelines.runtime.training import latest_checkpoint, read_meta

    path = latest_checkpoint(cfg.run_dir, LEARNER_KIND)
    if path is None:
        if cfg.run_dir.exists() and not cfg.run_dir.is_dir():
            raise DatasetError(f"{cfg.run_dir}: exists and is not a folder")
        return None
    have = read_meta(path, LEARNER_KIND).get("run", {})
    # a run from before an option existed trained as its default
    have = {k: getattr(HilserlConfig(), k) for k in RESUME_KEYS if k not in have} | have
    differ = [
        f"{k} {have.get(k)!r} (this command: {settings[k]!r})"
        for k in RESUME_KEYS
        if have.get(k) != settings[k]
    ]
    if differ:
        raise DatasetError(
            f"{cfg.run_dir}: run {cfg.run_name!r} was started with another configuration: "
            f"{'; '.join(differ)}; rerun with the same options, or choose another --name"
        )
    return {"path": str(path), **read_meta(path, LEARNER_KIND)}


def _endpoint_info(cfg: HilserlConfig) -> dict:
    """GET the classifier's description (HTTP) or ask its Serve application (handle)."""
    if cfg.reward_url:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(cfg.reward_url)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=5
        )
        try:
            conn.request("GET", parts.path or "/")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return json.loads(body)
    from ray import serve

    handle = serve.get_app_handle(cfg.reward_app)
    return handle.info.remote().result(timeout_s=10)


def check_reward_endpoint(cfg: HilserlConfig, cameras: list[str], image_size: int) -> dict:
    """The classifier endpoint answers and scores the env's cameras at the env's image size (or
    resizes); one line if not."""
    where = cfg.reward_url or f"Serve application {cfg.reward_app!r}"
    try:
        info = _endpoint_info(cfg)
    except Exception as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise DatasetError(
            f"--reward classifier: the reward endpoint ({where}) is unreachable: {why}; "
            "start it with `flywheel serve-reward CHECKPOINT`"
        ) from None
    try:
        import serving.client  # noqa: F401  (the collectors' client)
    except ImportError:
        raise DatasetError(
            "--reward classifier: this Flywheel has no reward classifier client (serving.client)"
        ) from None
    wanted = info.get("cameras", []) if isinstance(info, dict) else []
    missing = [c for c in wanted if c not in SIM_CAMERAS and c not in cameras]
    if missing:
        raise DatasetError(
            f"--reward classifier: the classifier ({where}) scores camera {missing[0]!r}, "
            "which the env does not have"
        )
    size = info.get("image_size") if isinstance(info, dict) else None
    if size is not None and int(size) != image_size and not info.get("resize"):
        raise DatasetError(
            f"--reward classifier: the classifier ({where}) takes {size} x {size} images, the "
            f"env gives {image_size} x {image_size}; serve it with --resize or match "
            "--image-size"
        )
    return info


# --------------------------------------------------------------------------- figures


def curves_figure(episodes: list[dict], metrics: list[dict], bound: float, title: str):
    """Learning curves: success and intervention rates, return, Q against its bound, losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    steps = np.array([e["env_steps"] for e in episodes])

    def running(values, window=20):
        values = np.asarray(values, dtype=float)
        out = np.empty_like(values)
        for i in range(len(values)):
            out[i] = values[max(0, i - window + 1) : i + 1].mean()
        return out

    ax = axes[0, 0]
    if len(episodes):
        lengths = np.array([e["length"] for e in episodes], dtype=float)
        interv = np.array([e["intervention_steps"] for e in episodes], dtype=float)
        ax.plot(steps, running([e["success"] for e in episodes]), label="success (with operator)")
        rate = [
            interv[max(0, i - 19) : i + 1].sum() / max(lengths[max(0, i - 19) : i + 1].sum(), 1)
            for i in range(len(episodes))
        ]
        ax.plot(steps, rate, label="intervention rate")
        alone = [e["success"] and e["intervention_steps"] == 0 for e in episodes]
        ax.plot(steps, running(alone), label="finished by the policy alone")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("env steps")
    ax.set_title("20-episode running averages", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    if len(episodes):
        ax.plot(steps, running([e["length"] for e in episodes]))
    ax.set_xlabel("env steps")
    ax.set_title("episode length (running average)", fontsize=9)
    m_steps = np.array([m.get("env_steps", 0) for m in metrics])
    ax = axes[1, 0]
    for key in ("q_mean", "q_max", "target_q_max"):
        vals = [m.get(key, np.nan) for m in metrics]
        ax.plot(m_steps, vals, label=key)
    ax.axhline(bound, color="red", lw=1, ls="--", label=f"bound {bound:g}")
    ax.set_xlabel("env steps")
    ax.set_title("Q against its bound", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for key in ("critic_loss", "bc_loss", "actor_q_loss"):
        vals = [m.get(key, np.nan) for m in metrics]
        ax.plot(m_steps, vals, label=key)
    ax.set_xlabel("env steps")
    ax.set_title("losses", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the run


def _agent_config(cfg: HilserlConfig, res: Resolved) -> dict:
    from pipelines.rl.agent import AgentConfig
    from pipelines.rl.monitor import q_bound
    from pipelines.simulator import kinematics as kin

    terminates = cfg.terminate_on_success
    return AgentConfig(
        cameras=res.cameras,
        encoder="frozen" if res.frozen else "drqv2",
        image_size=res.image_size,
        frame_stack=cfg.frame_stack,
        frozen_dim=res.frozen_dim,
        feature_dim=cfg.feature_dim,
        hidden_dim=res.hidden_dim,
        lr=cfg.lr,
        stddev_schedule=cfg.stddev_schedule,
        bc_weight=cfg.bc_weight,
        bc_on=cfg.bc_on,
        utd_ratio=cfg.utd_ratio,
        clip_target_q=cfg.clip_target_q,
        q_bound=q_bound(1.0, 0.99, terminates),
        state_low=[float(x) for x in kin.JOINT_LIMITS_LOW],
        state_high=[float(x) for x in kin.JOINT_LIMITS_HIGH],
    ).to_dict()


def _obs_spec(res: Resolved) -> dict:
    spec = {"observation.state": ((6,), "float32")}
    if res.frozen:
        spec["features"] = ((res.frozen_dim,), "float16")
    else:
        for key in res.cameras:
            spec[key] = ((res.image_size, res.image_size, 3), "uint8")
    return spec


def _say(cfg: HilserlConfig, line: str) -> None:
    if not cfg.quiet:
        print(line, flush=True)


def run(cfg: HilserlConfig) -> HilserlResult:
    t0 = time.time()
    _check_numbers(cfg)
    _robot_kind(cfg)
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    from pipelines.runtime.cluster import connect

    if not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
        # Ray nices its worker processes (15); here they are the job's real work: the learner
        # and the collectors' control loops must not starve behind everything else
        os.environ.setdefault("RAY_worker_niceness", "0")
    resources = connect(cfg.ray_address)
    gpu = resources.get("GPU", 0) >= 1
    res = resolve(cfg, gpu)
    settings = run_settings(cfg, res)
    previous = check_run(cfg, settings)
    if cfg.reward == "classifier":
        check_reward_endpoint(cfg, res.cameras, res.image_size)
    if previous is not None and previous.get("env_steps", 0) >= cfg.steps:
        _say(
            cfg,
            f"{cfg.run_name} already has {previous['env_steps']} env steps (--steps {cfg.steps})",
        )
        return HilserlResult(
            previous["path"], str(cfg.run_dir), {}, {}, time.time() - t0, None, None
        )
    return _run(cfg, res, settings, mlflow_uri, t0)


def _run(cfg: HilserlConfig, res: Resolved, settings: dict, mlflow_uri, t0: float):
    import ray

    from actors.hilserl.collector import CollectorConfig, collector_actor
    from actors.hilserl.learner import LearnerConfig, learner_actor
    from actors.hilserl.recording import OnlineRecorder
    from actors.priority import at_normal_priority
    from pipelines.runtime.tracking import TrackedRun

    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = cfg.run_dir.resolve()
    agent_config = _agent_config(cfg, res)
    bound = agent_config["q_bound"]
    threads = cfg.learner_threads or 1
    learner_cfg = LearnerConfig(
        run_dir=str(run_dir),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        online_capacity=cfg.online_capacity,
        offline_capacity=cfg.offline_capacity,
        online_ratio=cfg.online_ratio,
        learning_starts=cfg.learning_starts,
        updates_per_step=cfg.updates_per_step,
        max_lag=cfg.max_lag,
        push_every=cfg.push_every,
        checkpoint_every=cfg.checkpoint_every,
        q_bound=bound,
        q_alarm_patience=cfg.q_alarm_patience,
        silent_after_s=cfg.silent_after_s,
        random_steps=cfg.random_steps,
        seed=cfg.seed,
        threads=threads,
        device="auto" if res.gpu else "cpu",
        offline_dataset=cfg.offline_dataset,
        run_meta=settings,
    )
    learner_options = {"num_cpus": 0}
    if res.gpu:
        learner_options["num_gpus"] = 1
    tracked = TrackedRun("flywheel-hilserl") if mlflow_uri else None
    source = res.encoder_spec[len("frozen:") :] if res.frozen else None
    learner = learner_actor(**learner_options).remote(
        learner_cfg, agent_config, _obs_spec(res), source
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
            from pipelines.synth import TASK_TEXT

            recorder = (
                ray.remote(at_normal_priority(OnlineRecorder))
                .options(num_cpus=0)
                .remote(
                    dataset,
                    cfg.fps,
                    TASK_TEXT[cfg.task],
                    {k: (res.image_size, res.image_size) for k in res.cameras},
                    settings["max_ee_step"],
                )
            )
            actors.append(recorder)
        ccfg = CollectorConfig(
            task=cfg.task,
            fps=cfg.fps,
            image_size=res.image_size,
            cameras=res.cameras,
            frame_stack=cfg.frame_stack,
            keep_images=cfg.record or not res.frozen,
            operator=cfg.operator,
            random_steps=cfg.random_steps,
            reward=cfg.reward,
            reward_app=cfg.reward_app,
            reward_url=cfg.reward_url,
            terminate_on_success=cfg.terminate_on_success,
            success_frames=cfg.success_frames,
            robot=res.robot,
            follower_port=cfg.follower_port,
            leader_port=cfg.leader_port,
            follower_id=cfg.follower_id,
            leader_id=cfg.leader_id,
            calibration_dir=cfg.calibration_dir,
            real_cameras=res.camera_sources,
        )
        n = 1 if res.robot == "real" else cfg.collectors
        collector_cls = collector_actor(num_cpus=0)
        collectors = [
            collector_cls.remote(i, learner, ccfg, agent_config, recorder, cfg.seed)
            for i in range(n)
        ]
        actors += collectors
        if tracked is not None:
            tracked.start(cfg.run_name, {**settings, "collectors": n, "steps": cfg.steps})
        runs = {c.run.remote(): i for i, c in enumerate(collectors)}
        _say(
            cfg,
            f"HIL-SERL {cfg.run_name}: {n} collector(s) ({res.robot}), encoder {res.encoder_spec}, "
            f"{cfg.steps} env steps, bc_weight {cfg.bc_weight}, reward {cfg.reward}, "
            f"Q bound {bound:g}",
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
            sent = status["episodes"] - _resumed_episodes(resumed)
            deadline = time.monotonic() + 600
            while (written := ray.get(recorder.count.remote())) < sent:
                if time.monotonic() > deadline:
                    print(f"warning: the recording has {written} of the {sent} episodes")
                    break
                time.sleep(0.2)
        figures = _figures(cfg, run_dir, history, bound, tracked)
        summary = {k: v for k, v in status.items() if k != "warnings"}
        atomic_write_json(run_dir / "summary.json", {"status": summary, "checkpoint": final})
        mlflow_run = None
        if tracked is not None:
            tracked.log_metrics(_numeric(status), step=int(status["env_steps"]))
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


def _resumed_episodes(resumed: dict | None) -> int:
    return int(resumed["episodes"]) if resumed else 0


def _numeric(status: dict) -> dict:
    return {
        k: float(v)
        for k, v in status.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


STRAGGLER_S = 600  # how long the end waits for collectors to finish their last episode


def _watch(cfg: HilserlConfig, learner, runs: dict, tracked, bound: float) -> dict:
    """Poll the learner until the run has its steps and every collector has stopped (after the
    episode it was in); log, print, notice dead collectors."""
    import ray

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
            tracked.log_metrics(_numeric(status), step=int(status["env_steps"]))
        now = time.monotonic()
        if finished and pending and stragglers_since is None:
            stragglers_since = now  # collectors finishing the episode they were in
        if now - last_print > 10 or (finished and not pending):
            last_print = now
            _say(cfg, _progress_line(status, cfg.steps, bound))
        if finished and not pending:
            return status
        if finished and now - stragglers_since > STRAGGLER_S:
            _say(cfg, f"warning: {len(pending)} collector(s) did not stop in {STRAGGLER_S} s")
            return status
        if not pending and dead and not status["done"] and status["env_steps"] < cfg.steps:
            raise RuntimeError(
                f"every collector is gone (last: {last_reason}); the learner's last checkpoint "
                "is kept"
            )


def _progress_line(s: dict, steps: int, bound: float) -> str:
    parts = [f"env {s['env_steps']}/{steps}", f"{s['episodes']} episodes"]
    if "success_rate" in s:
        parts.append(f"success {s['success_rate']:.2f}")
        parts.append(f"interventions {s['intervention_rate']:.2f}")
    parts.append(f"learner {s['learner_steps']} steps ({s['updates_per_s']:.0f}/s)")
    if "q_mean" in s:
        parts.append(f"Q {s['q_mean']:.2f} (max {s['q_max']:.2f}, bound {bound:g})")
    parts.append(f"alarms {s['q_alarms']}")
    return ", ".join(parts)


def _figures(cfg, run_dir: Path, history: dict, bound: float, tracked) -> list[str]:
    fig = curves_figure(history["episodes"], history["metrics"], bound, cfg.run_name)
    path = run_dir / "learning_curves.png"
    from pipelines.dataset import replace_durably, temp_path_for

    tmp = temp_path_for(path)
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    replace_durably(tmp, path)
    if tracked is not None:
        tracked.log_figure(
            curves_figure,
            "learning_curves.png",
            episodes=history["episodes"],
            metrics=history["metrics"],
            bound=bound,
            title=cfg.run_name,
        )
    atomic_write_json(run_dir / "history.json", history)
    return [str(path)]


# --------------------------------------------------------------------------- CLI


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="sim", help="sim (the default)")
    p.add_argument("--robot", default=None, help="emulated: an emulated SO-101 through its driver")
    p.add_argument("--follower-port", default=None, help="a real arm's follower serial port")
    p.add_argument("--leader-port", default=None, help="a real arm's leader serial port")
    p.add_argument("--follower-id", default=None, help="the follower's calibration name")
    p.add_argument("--leader-id", default=None, help="the leader's calibration name")
    p.add_argument("--calibration-dir", default=None)
    p.add_argument("--camera", action="append", default=[], metavar="NAME=SOURCE")
    p.add_argument("--task", default="reach_grasp")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=20_000, help="env steps to collect")
    p.add_argument("--collectors", type=int, default=1)
    p.add_argument("--encoder", default=None, help="drqv2 or frozen:CHECKPOINT")
    p.add_argument("--frame-stack", type=int, default=1)
    p.add_argument("--hidden-dim", type=int, default=None)
    p.add_argument("--feature-dim", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bc-weight", type=float, default=0.5)
    p.add_argument("--bc-on", default="interventions", help="interventions|interventions+demos")
    p.add_argument("--utd-ratio", type=int, default=1, help="critic updates per actor update")
    p.add_argument(
        "--updates-per-step", type=float, default=1.0, help="learner steps per env step (0: free)"
    )
    p.add_argument(
        "--max-lag", type=int, default=200, help="learner steps behind before collectors wait"
    )
    p.add_argument("--online-ratio", type=float, default=0.5)
    p.add_argument("--online-capacity", type=int, default=100_000)
    p.add_argument("--offline-capacity", type=int, default=100_000)
    p.add_argument(
        "--offline-dataset", default=None, help="a LeRobot dataset seeding the offline buffer"
    )
    p.add_argument("--learning-starts", type=int, default=100)
    p.add_argument("--random-steps", type=int, default=500)
    p.add_argument("--push-every", type=int, default=50, help="learner steps between weight pushes")
    p.add_argument(
        "--checkpoint-every", type=int, default=1000, help="env steps between checkpoints"
    )
    p.add_argument("--stddev-schedule", default="linear(0.2,0.05,5000)")
    p.add_argument("--clip-target-q", action="store_true")
    p.add_argument("--q-alarm-patience", type=int, default=100)
    p.add_argument("--reward", default="sim", help="sim or classifier")
    p.add_argument("--reward-app", default="reward", help="the Serve application (classifier)")
    p.add_argument("--reward-url", default=None, help="or the classifier's HTTP endpoint")
    p.add_argument(
        "--terminate-on-success",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a success ends the episode (default: yes)",
    )
    p.add_argument(
        "--success-frames",
        type=int,
        default=1,
        help="classifier reward: consecutive frames it must call a success (default 1)",
    )
    p.add_argument("--no-operator", action="store_true", help="(sim) no simulated operator")
    p.add_argument("--no-record", action="store_true", help="do not record the online episodes")
    p.add_argument(
        "--silent-after",
        type=float,
        default=120.0,
        help="seconds before a quiet collector is reported",
    )
    p.add_argument("--name", default=None)
    p.add_argument("--storage", default="flywheel-runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learner-threads", type=int, default=None)
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> HilserlConfig:
    values = vars(args).copy()
    values["operator"] = not values.pop("no_operator")
    values["record"] = not values.pop("no_record")
    values["mlflow"] = not values.pop("no_mlflow")
    values["silent_after_s"] = values.pop("silent_after")
    return HilserlConfig(**values)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel hilserl") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = config_from_args(args)
    try:
        result = run(cfg)
    except (DatasetError, ClusterError, TrackingError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the run resumes from its last checkpoint", file=sys.stderr)
        return 130
    except RuntimeError as e:  # the learner failed, or every collector is gone
        print(f"{prog}: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    s = result.status
    if s:
        print(
            f"{s['env_steps']} env steps, {s['episodes']} episodes, {s['learner_steps']} learner "
            f"steps in {result.seconds:.0f} s; Q alarms {s['q_alarms']}"
        )
    print(f"Checkpoint: {result.checkpoint}")
    if result.dataset:
        print(f"Online episodes: {result.dataset}")
    if result.mlflow_run:
        print(result.mlflow_run)
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.hilserl"))
