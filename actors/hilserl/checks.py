"""`flywheel hilserl`'s checks before anything starts: the numbers, the robot, the encoder, the
classifier endpoint, and a rerun's settings against the run's checkpoint (resume or refuse).

Each problem is one line (a `DatasetError`). `check_inputs` runs before Ray starts: the
numbers, the robot and its cameras, `--storage`, the encoder, the offline dataset, an HTTP
reward endpoint, and whether the replay buffers fit the node's memory (`check_replay_memory`:
the rings are allocated lazily, so a run too big for the node would be OOM-killed only once
they fill, hours in). `on_cluster` adds what needs the cluster (a GPU or not), giving the
settings every actor gets (`ResolvedRun`); `run_settings` the run's identity, kept in every
checkpoint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ray import serve

from actors.hilserl.config import RESUME_KEYS, EpisodeSpec, HilserlConfig
from actors.so101 import RobotError
from pipelines.dataset import DatasetError
from pipelines.rl.config import KIND, AgentConfig, stddev
from pipelines.rl.features import load_frozen_encoder
from pipelines.rl.monitor import q_bound
from pipelines.rl.offline import check_offline_dataset
from pipelines.rl.replay import frame_nbytes
from pipelines.runtime.checkpoints import latest_checkpoint, read_meta
from pipelines.runtime.cluster import check_job_output
from pipelines.runtime.training import flat_fields
from pipelines.simulator import kinematics as kin
from pipelines.simulator.env import SO101Env
from pipelines.simulator.tasks import CAMERAS, TASKS
from serving.client import HTTPRewardClient

SIM_CAMERAS = list(CAMERAS)
ACTION_DIM = 4  # dx, dy, dz, gripper (the ee_delta action every collector sends)
REPLAY_SHARE = 0.7  # of the node's available memory the replay buffers may take


def check_numbers(cfg: HilserlConfig) -> None:
    for name, value, low in (
        ("--steps", cfg.learner.steps, 1),
        ("--collectors", cfg.collector.collectors, 1),
        ("--batch-size", cfg.learner.batch_size, 1),
        ("--utd-ratio", cfg.agent.utd_ratio, 1),
        ("--frame-stack", cfg.agent.frame_stack, 1),
        ("--feature-dim", cfg.agent.feature_dim, 1),
        ("--online-capacity", cfg.learner.online_capacity, 2),
        ("--offline-capacity", cfg.learner.offline_capacity, 2),
        ("--push-every", cfg.learner.push_every, 1),
        ("--checkpoint-every", cfg.learner.checkpoint_every, 1),
        ("--q-alarm-patience", cfg.learner.q_alarm_patience, 1),
        ("--learning-starts", cfg.learner.learning_starts, 1),
        ("--random-steps", cfg.learner.random_steps, 0),
        ("--max-lag", cfg.learner.max_lag, 0),
        ("--fps", cfg.collector.fps, 1),
        ("--success-frames", cfg.collector.success_frames, 1),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if cfg.agent.hidden_dim is not None and cfg.agent.hidden_dim < 1:
        raise DatasetError(f"--hidden-dim {cfg.agent.hidden_dim}: at least 1")
    if not (math.isfinite(cfg.learner.online_ratio) and 0.0 <= cfg.learner.online_ratio <= 1.0):
        raise DatasetError(f"--online-ratio {cfg.learner.online_ratio}: a share between 0 and 1")
    for name, value in (
        ("--bc-weight", cfg.agent.bc_weight),
        ("--updates-per-step", cfg.learner.updates_per_step),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise DatasetError(f"{name} {value}: a number >= 0")
    if not (math.isfinite(cfg.agent.lr) and cfg.agent.lr > 0):
        raise DatasetError(f"--lr {cfg.agent.lr}: must be positive")
    if not cfg.learner.silent_after_s > 0:
        raise DatasetError(f"--silent-after {cfg.learner.silent_after_s}: must be positive")
    if cfg.image_size is not None and not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")
    if cfg.robot.env != "sim":
        raise DatasetError(f"--env {cfg.robot.env!r}: 'sim' (a real or emulated arm: --robot)")
    if cfg.collector.reward not in ("sim", "classifier"):
        raise DatasetError(f"--reward {cfg.collector.reward!r}: sim or classifier")
    if cfg.agent.bc_on not in ("interventions", "interventions+demos"):
        raise DatasetError(f"--bc-on {cfg.agent.bc_on!r}: interventions or interventions+demos")
    if cfg.collector.task not in TASKS:
        raise DatasetError(f"--task {cfg.collector.task!r}: one of {sorted(TASKS)}")
    try:
        stddev(cfg.agent.stddev_schedule, 0)
    except ValueError as e:
        raise DatasetError(f"--stddev-schedule: {e}") from None


def robot_kind(cfg: HilserlConfig) -> str:
    if cfg.robot.arm.follower_port or cfg.robot.arm.leader_port:
        if not (cfg.robot.arm.follower_port and cfg.robot.arm.leader_port):
            raise DatasetError("give both --follower-port and --leader-port (a real arm)")
        if cfg.robot.robot not in (None, "real"):
            raise DatasetError(f"--robot {cfg.robot.robot}: the ports name a real arm")
        return "real"
    if cfg.robot.robot in (None, "sim"):
        return "sim"
    if cfg.robot.robot == "emulated":
        return "emulated"
    raise DatasetError(f"--robot {cfg.robot.robot!r}: emulated (or the ports of a real arm)")


@dataclass
class ResolvedRun:
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
        encoder = load_frozen_encoder(spec[len("frozen:") :])
        return f"frozen:{Path(encoder.source).resolve()}", encoder
    raise DatasetError(f"--encoder {spec!r}: drqv2 or frozen:CHECKPOINT")


@dataclass
class Inputs:
    """What the checks before Ray found (`check_inputs`)."""

    robot: str
    encoder_spec: str
    encoder: object | None  # the frozen encoder, else None (drqv2)
    cameras: list[str]
    image_size: int
    camera_sources: dict


def check_storage(cfg: HilserlConfig) -> None:
    """`--storage`/`--name` can hold the run: not under a regular file, nor in /proc or /sys."""
    check_job_output(cfg.run_dir, "--storage")
    if cfg.run_dir.exists() and not cfg.run_dir.is_dir():
        raise DatasetError(f"{cfg.run_dir}: exists and is not a folder")


def check_inputs(cfg: HilserlConfig, available: int | None = None) -> Inputs:
    """Check every input that needs no cluster (before Ray starts); a one-line DatasetError
    for each problem. `available`: the node's available memory in bytes (None: this
    machine's, when the run starts a local cluster; unchecked on a remote one)."""
    check_numbers(cfg)
    robot = robot_kind(cfg)
    check_storage(cfg)
    if robot == "real" and cfg.collector.reward == "sim":
        raise DatasetError("a real arm has no simulator to reward it: use --reward classifier")
    try:
        sources = cfg.robot.arm.camera_sources()
    except RobotError as e:
        raise DatasetError(str(e)) from None
    if robot == "real" and not sources:
        raise DatasetError("a real arm needs its cameras: --camera front=0 --camera wrist=2")
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
    if cfg.learner.offline_dataset:
        learner = cfg.learner
        check_offline_dataset(
            learner.offline_dataset, cameras, learner.offline_units, learner.offline_calibration
        )
    if cfg.collector.reward == "classifier" and cfg.collector.reward_url:
        check_reward_endpoint(cfg, cameras, image_size)  # HTTP: no cluster needed
    frozen_dim = encoder.feature_dim if encoder is not None else 0
    if available is None and not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
        available = available_memory()
    if available is not None:
        check_replay_memory(cfg, replay_spec(cameras, image_size, frozen_dim), available)
    return Inputs(robot, spec, encoder, cameras, image_size, sources)


def on_cluster(cfg: HilserlConfig, inputs: Inputs, gpu: bool) -> ResolvedRun:
    """What the cluster decides (a GPU for the learner or not): the run's settings."""
    if cfg.encoder is None and not gpu:
        raise DatasetError(
            "--encoder: the cluster has no GPU for the learner, and the trainable drqv2 "
            "encoder is slow on CPUs (see the README's HIL-SERL benchmarks): give --encoder "
            "frozen:CHECKPOINT (an estimator or reward classifier), or --encoder drqv2"
        )
    encoder = inputs.encoder
    return ResolvedRun(
        robot=inputs.robot,
        encoder_spec=inputs.encoder_spec,
        frozen=encoder is not None,
        cameras=inputs.cameras,
        image_size=inputs.image_size,
        hidden_dim=cfg.agent.hidden_dim or (1024 if gpu else 256),
        gpu=gpu,
        frozen_dim=encoder.feature_dim if encoder is not None else 0,
        camera_sources=inputs.camera_sources,
    )


def resolve(cfg: HilserlConfig, gpu: bool) -> ResolvedRun:
    """`check_inputs` then `on_cluster`: every check, for a cluster with or without a GPU."""
    return on_cluster(cfg, check_inputs(cfg), gpu)


def replay_spec(cameras: list[str], image_size: int, frozen_dim: int) -> dict:
    """The replay buffers' observation keys: shapes and dtypes (`obs_spec`)."""
    spec = {"observation.state": ((6,), "float32")}
    if frozen_dim:
        spec["features"] = ((frozen_dim,), "float16")
    else:
        for key in cameras:
            spec[key] = ((image_size, image_size, 3), "uint8")
    return spec


def available_memory() -> int | None:
    """This machine's available memory in bytes (MemAvailable, within a cgroup's limit)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def replay_bytes(cfg: HilserlConfig, spec: dict) -> int:
    """What the online and offline rings take once full."""
    capacity = cfg.learner.online_capacity + cfg.learner.offline_capacity
    return capacity * frame_nbytes(spec, ACTION_DIM)


def check_replay_memory(cfg: HilserlConfig, spec: dict, available: int) -> None:
    """Refuse replay buffers the node cannot hold (module docstring), naming the flags."""
    need = replay_bytes(cfg, spec)
    if need <= REPLAY_SHARE * available:
        return
    what = (
        "--encoder frozen:CHECKPOINT's features"
        if "features" in spec
        else (
            f"{sum(k.startswith('observation.images') for k in spec)} camera(s) at --image-size "
            f"{spec[next(k for k in spec if k.startswith('observation.images'))][0][0]}"
        )
    )
    raise DatasetError(
        f"--online-capacity {cfg.learner.online_capacity} + --offline-capacity "
        f"{cfg.learner.offline_capacity} frames of {what} need {need / 1e9:.1f} GB of replay "
        f"memory, more than {REPLAY_SHARE:.0%} of the node's {available / 1e9:.1f} GB "
        "available; lower --online-capacity/--offline-capacity or --image-size, or use "
        "--encoder frozen:CHECKPOINT"
    )


def agent_config(cfg: HilserlConfig, res: ResolvedRun) -> AgentConfig:
    """The agent the run trains: the agent section's hyperparameters and what was resolved."""
    return cfg.agent.agent_config(
        res.hidden_dim,
        cameras=res.cameras,
        encoder="frozen" if res.frozen else "drqv2",
        image_size=res.image_size,
        frozen_dim=res.frozen_dim,
        q_bound=q_bound(1.0, 0.99, cfg.collector.terminate_on_success),
        state_low=[float(x) for x in kin.JOINT_LIMITS_LOW],
        state_high=[float(x) for x in kin.JOINT_LIMITS_HIGH],
    )


def episode_spec(cfg: HilserlConfig, res: ResolvedRun) -> EpisodeSpec:
    """What every collector's episodes hold: images too when recorded or for drqv2."""
    return EpisodeSpec(
        cameras=res.cameras,
        image_size=res.image_size,
        frame_stack=cfg.agent.frame_stack,
        keep_images=cfg.record or not res.frozen,
    )


def obs_spec(res: ResolvedRun) -> dict:
    """The replay buffers' observation keys: shapes and dtypes."""
    return replay_spec(res.cameras, res.image_size, res.frozen_dim if res.frozen else 0)


def run_settings(cfg: HilserlConfig, res: ResolvedRun) -> dict:
    """The run's identity (kept in every checkpoint; a resume must match `RESUME_KEYS`)."""
    flat = flat_fields(cfg)
    settings = {k: flat[k] for k in RESUME_KEYS if k in flat}
    settings.update(
        robot=res.robot,
        encoder=res.encoder_spec,
        image_size=res.image_size,
        cameras=res.cameras,
        hidden_dim=res.hidden_dim,
        offline_dataset=str(Path(cfg.learner.offline_dataset).resolve())
        if cfg.learner.offline_dataset
        else None,
    )
    extra = {
        "action_mode": "ee_delta",
        "max_ee_step": SO101Env(render_images=False).max_ee_step,
        "env": {
            "task": cfg.collector.task,
            "image_size": res.image_size,
            "fps": cfg.collector.fps,
            "action_mode": "ee_delta",
        },
    }
    return {**settings, **extra}


def check_run(cfg: HilserlConfig, settings: dict) -> dict | None:
    """The run's newest checkpoint meta if it exists (resume); a DatasetError if it trains
    something else."""
    path = latest_checkpoint(cfg.run_dir, KIND)
    if path is None:
        if cfg.run_dir.exists() and not cfg.run_dir.is_dir():
            raise DatasetError(f"{cfg.run_dir}: exists and is not a folder")
        return None
    have = read_meta(path, KIND).get("run", {})
    # a run from before an option existed trained as its default
    defaults = flat_fields(HilserlConfig())
    have = {k: defaults[k] for k in RESUME_KEYS if k not in have and k in defaults} | have
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
    return {"path": str(path), **read_meta(path, KIND)}


def _endpoint_info(cfg: HilserlConfig) -> dict:
    """GET the classifier's description (HTTP) or ask its Serve application (handle)."""
    if cfg.collector.reward_url:  # the collectors' own client: TLS for https://, its token
        client = HTTPRewardClient(cfg.collector.reward_url, retries=0, timeout_s=5.0)
        try:
            return client.info()
        finally:
            client.close()
    handle = serve.get_app_handle(cfg.collector.reward_app)
    return handle.info.remote().result(timeout_s=10)


def check_reward_endpoint(cfg: HilserlConfig, cameras: list[str], image_size: int) -> dict:
    """The classifier endpoint answers and scores the env's cameras at the env's image size (or
    resizes); one line if not."""
    where = cfg.collector.reward_url or f"Serve application {cfg.collector.reward_app!r}"
    try:
        info = _endpoint_info(cfg)
    except Exception as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise DatasetError(
            f"--reward classifier: the reward endpoint ({where}) is unreachable: {why}; "
            "start it with `flywheel serve-reward CHECKPOINT`"
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
