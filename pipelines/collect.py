"""`flywheel collect OUT --episodes N`: collection with critical-state approval (seed 000).

Each episode runs `actors.collection.episode.run_collection_episode` (`--robot`, below): a driver
acts
on plain frames; at critical states (`--critical`) the `--responders` propose n candidate
actions, the `--selector` (`random`, `epsilon_greedy` with `--epsilon`, `learned` with a
`--scorer` through a `--temperature` softmax) picks one with a logged propensity, the admin
(`--approver progress:T`: approve when the task progress gains at least T) approves it, or
rejects it and the state is undone (`SO101Env.set_state`) and another candidate drawn with the
exact conditional propensity. Episodes run as Ray tasks in parallel (the `flywheel synth`
pattern: each task renders its episodes' videos and returns their tables; the parquet files and
metadata are written once every length is known, by `pipelines.synth.write_rollouts`).

**Robots** (`--robot`). `sim` (default): `SO101Env`, exact undo. `emulated`: each episode's
task runs an `EmulatedSO101` (servo emulators on pseudo-terminals, the follower coupled to a
simulator, cameras rendering it) behind the real driver (`FollowerArm`), wrapped as an
`actors.collection.workcell.ArmWorkcell`: each action is sent to the follower and the next frame is
read
once the arm has settled there (so frames do not depend on the machine's load). The scripted
responders compute their candidates from the coupled simulator's state (they are the caller of
the responder API, `actors.collection.episode.Responder`), the `progress:T` admin reads the coupled
simulator's progress, and an undo is `return_to_pose` through `FollowerArm`: the arm goes back
to the recorded joint pose, the cube is not put back (deliberately, as on a real arm).
`real` (`--follower-port`, `--follower-id`, `--camera front=S --camera wrist=S`): the same
workcell on a real follower and OpenCV cameras; its episodes run one after another in this
process (one arm, and the keyboard); responders must be policy checkpoints (a controller needs
the simulator's state), the admin is `--approver keyboard`, critical states `every:K` (the grasp
region needs the cube's position), and the dataset has no simulator progress columns
(`progress`, `stage_progress_gt`, `progress_gt`); a rejected action's effect on the cube is not
undone. From Python, `run(cfg, admin=APIAdmin(approve), responders=[APIResponder(...)])` puts
an API's admin and candidates in place of `--approver` / `--responders`.

**The dataset** is a LeRobot dataset (v2.1 or v3.0) with synth's columns (`action` is the
executed action, so every stage reads it unchanged) plus seed 000's:

    action_propensity   float32[1]  P(a | s) of the executed action (1.0 on plain frames)
    selector_mode       string      random / epsilon_greedy / learned (the run's mode)
    approval_status     string      approved / rejected / none (plain frames)
    candidate_actions   float32[n, action_dim]  the n candidates (plain frames: the executed
                                    action in every row)
    selected_candidate  int64       row of candidate_actions executed; -1 on plain frames

The seed instead stores the candidates concatenated in `action` (n * action_dim values), which
no other stage could read as an action: here `action` stays the one action executed and the
candidates get their own column, so `train-policy`, `label` and the estimators read a
collected dataset like any other and importance weighting still sees the candidate set.
A rejected attempt is a frame of its own (`approval_status` rejected, next.reward 0) followed by
a frame of the same restored state; drop only those with `approval_status != "rejected"`
(keeping `== "approved"` would also drop every plain frame, the seed's filter example's trap).

**The log** `action_propensity_log.jsonl` (`pipelines.selection.propensity`): one line per frame,
every
field the seed lists plus `candidate_propensities`, `selected_candidate`, `collection_id`,
appended and fsynced line by line as each group of episodes comes back (in episode order).
`approval_status` is null there on plain frames, as the seed specifies for the log ("none" in
the parquet column). OUT must be new, empty, or the folder of an interrupted collect (a log but
no `meta/info.json`): a rerun then replaces that run's data and videos and appends its own log
lines after the old ones, which stay (never rewritten) under the old `collection_id`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from actors.collection.episode import CriticalRule, ProgressAdmin
from pipelines.dataset import (
    V21,
    V30,
    DatasetError,
    ImageStats,
    VideoWriter,
    atomic_write_json,
    check_frame_size,
    frames_table,
    remove_stale_temps,
    resolve_video_codec,
    table_stats,
)
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError, check_job_output
from pipelines.selection.propensity import (
    COLLECT_META,
    LOG_NAME,
    PropensityLog,
    check_complete,
    log_path,
)
from pipelines.selection.selector import MODES, SelectorError, check_mode
from pipelines.synth import CAMERAS, TASK_TEXT, episode_video, stage_positions, stage_progress

DEFAULT_RESPONDERS = "expert,hesitant,noisy,failing"
ROBOTS = ("sim", "emulated", "real")


@dataclass
class CollectConfig:
    out: str
    episodes: int
    seed: int = 0
    task: str = "reach_grasp"
    selector: str = "random"
    epsilon: float = 0.1
    temperature: float = 1.0
    scorer: str | None = None
    score_scale: float = 5.0
    responders: str = DEFAULT_RESPONDERS
    driver: str = "noisy"
    critical: str = "grasp+every:10"
    approver: str = "progress:0.002"
    robot: str = "sim"  # sim | emulated | real
    follower_port: str | None = None  # a real arm's follower serial port
    follower_id: str | None = None  # its calibration name
    calibration_dir: str | None = None
    camera: list[str] = field(default_factory=list)  # a real arm's NAME=SOURCE (front, wrist)
    max_steps: int | None = None  # an episode's step limit (the task's time limit * fps)
    fps: int = 10
    image_size: int = 128
    vcodec: str | None = None
    format: str = V21
    ray_address: str | None = None

    def validate(self, api_admin: bool = False, api_responders: bool = False) -> None:
        """One-line DatasetErrors for bad options (nothing is written before this passes).

        `api_admin` / `api_responders`: `run` was given an admin / responders through the API
        (they replace `--approver` / `--responders`)."""
        if self.episodes < 1:
            raise DatasetError(f"--episodes {self.episodes}: at least 1")
        if self.task not in TASK_TEXT:
            raise DatasetError(f"--task {self.task!r}: one of {sorted(TASK_TEXT)}")
        self.check_robot(api_admin, api_responders)
        if self.max_steps is not None and self.max_steps < 1:
            raise DatasetError(f"--max-steps {self.max_steps}: at least 1")
        try:
            check_mode(self.selector)
            CriticalRule.parse(self.critical)
        except SelectorError as e:
            raise DatasetError(f"--selector: {e}" if "mode" in str(e) else str(e)) from None
        if not 0.0 <= self.epsilon <= 1.0:
            raise DatasetError(f"--epsilon {self.epsilon}: between 0 and 1")
        if not self.temperature > 0:
            raise DatasetError(f"--temperature {self.temperature}: must be > 0")
        if not self.score_scale > 0:
            raise DatasetError(f"--score-scale {self.score_scale}: must be > 0")
        if self.selector != "random" and not self.scorer:
            raise DatasetError(
                f"--selector {self.selector}: needs --scorer (a train-selector checkpoint, or "
                "a controller or policy checkpoint whose distance to its action scores)"
            )
        names = [] if api_responders else self.responder_names()
        if not names and not api_responders:
            raise DatasetError(f"--responders {self.responders!r}: at least one responder")
        for name in [*names, self.driver, *([self.scorer] if self.scorer else [])]:
            check_source(name, self.robot)
        if not api_admin:
            parse_approver(self.approver, self.robot)
        if not 1 <= self.fps <= 120:
            raise DatasetError(f"--fps {self.fps}: between 1 and 120")
        if not 16 <= self.image_size <= 1024:
            raise DatasetError(f"--image-size {self.image_size}: between 16 and 1024")
        try:
            self.vcodec = resolve_video_codec(self.vcodec)
            check_frame_size(self.vcodec, self.image_size, self.image_size)
        except DatasetError as e:
            raise DatasetError(f"--vcodec/--image-size: {e}") from None
        if self.format not in (V21, V30):
            raise DatasetError(f"--format {self.format!r}: {V21} or {V30}")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a folder (nothing was written)")
        if out.exists() and any(out.iterdir()) and not interrupted_collection(out):
            raise DatasetError(
                f"{out}: exists and is neither empty nor an interrupted collect (nothing was "
                "written)"
            )
        if out.exists():
            check_complete(log_path(out))

    def responder_names(self) -> list[str]:
        return [r.strip() for r in self.responders.split(",") if r.strip()]

    def check_robot(self, api_admin: bool, api_responders: bool) -> None:
        if self.robot not in ROBOTS:
            raise DatasetError(f"--robot {self.robot!r}: one of {', '.join(ROBOTS)}")
        real_only = {
            "--follower-port": self.follower_port,
            "--follower-id": self.follower_id,
            "--calibration-dir": self.calibration_dir,
            "--camera": self.camera,
        }
        if self.robot != "real":
            given = [flag for flag, value in real_only.items() if value]
            if given:
                raise DatasetError(f"{given[0]}: only with --robot real (a real arm)")
            return
        if not self.follower_port:
            raise DatasetError("--robot real: needs --follower-port (the follower's serial port)")
        if not self.follower_id:
            raise DatasetError("--robot real: needs --follower-id (which calibration to use)")
        from pipelines.robot import camera_sources

        sources = camera_sources(self.camera)
        if sorted(sources) != sorted(CAMERAS):
            raise DatasetError(
                "--robot real: needs its two cameras, --camera front=SOURCE --camera wrist=SOURCE"
            )
        if CriticalRule.parse(self.critical).grasp:
            raise DatasetError(
                f"--critical {self.critical!r}: the grasp region needs the cube's position, "
                "which a real arm does not know; use every:K"
            )
        follower_calibration(self)

    @property
    def text(self) -> str:
        return TASK_TEXT[self.task]


def interrupted_collection(out: Path) -> bool:
    return (out / LOG_NAME).exists() and not (out / "meta" / "info.json").exists()


def check_source(name: str, robot: str = "sim") -> None:
    """A responder/driver/scorer: a controller name or a policy checkpoint (folder)."""
    from pipelines.simulator.controllers import CONTROLLERS

    if name in CONTROLLERS or name.removeprefix("controller:") in CONTROLLERS:
        if robot == "real":
            raise DatasetError(
                f"{name!r}: a scripted controller reads the simulator's state, which a real arm "
                "does not have; give policy checkpoints (or responders through the API)"
            )
        return
    if not Path(name).is_dir():
        raise DatasetError(
            f"{name!r}: neither a controller ({', '.join(sorted(CONTROLLERS))}) nor a policy "
            "checkpoint folder"
        )


def parse_approver(text: str, robot: str = "sim"):
    """`progress:T` (the simulator's, or the emulated arm's coupled simulator's) or `keyboard`."""
    from actors.collection.episode import KeyboardAdmin

    kind, _, value = text.partition(":")
    if kind == "keyboard" and not value:
        if robot != "real":
            raise DatasetError(
                f"--approver keyboard: only on a real arm (--robot {robot}'s episodes run as "
                "Ray tasks, with no terminal); use progress:T"
            )
        return KeyboardAdmin()
    if kind != "progress":
        raise DatasetError(
            f"--approver {text!r}: progress:T (approve when the task progress gains at least T) "
            "or keyboard (a real arm)"
        )
    if robot == "real":
        raise DatasetError(
            f"--approver {text!r}: a real arm's task progress is unknown; use keyboard (or an "
            "admin through the API)"
        )
    try:
        return ProgressAdmin(float(value) if value else ProgressAdmin.threshold)
    except ValueError:
        raise DatasetError(f"--approver {text!r}: T is not a number") from None


def follower_calibration(cfg: CollectConfig) -> dict:
    from actors.feetech.calibration import DEFAULT_CALIBRATION_DIR
    from pipelines.robot import arm_calibration

    return arm_calibration(cfg.follower_id, cfg.calibration_dir or DEFAULT_CALIBRATION_DIR)


@dataclass(frozen=True)
class CollectPlan:
    index: int
    seed: int


def plan_episodes(cfg: CollectConfig) -> list[CollectPlan]:
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.episodes)
    return [CollectPlan(i, int(seeds[i])) for i in range(cfg.episodes)]


class _PolicyAction:
    """A controller or checkpoint as a callable `(obs, info) -> action` (driver or scorer)."""

    def __init__(self, name: str, env, seed: int | None):
        from pipelines.simulator.controllers import make_controller

        self.controller = None
        self.policy = None
        name = name.removeprefix("controller:")
        from pipelines.simulator.controllers import CONTROLLERS

        if name in CONTROLLERS:
            self.controller = make_controller(name, env, seed=seed)
        else:
            self.policy = load_policy(name, env)

    def reset(self, seed: int | None) -> None:
        if self.controller is not None:
            self.controller.reset(seed)
        else:
            self.policy.reset()

    def __call__(self, obs: dict, info: dict | None = None) -> np.ndarray:
        if self.controller is not None:
            return self.controller(obs, info or {})
        return self.policy.act(obs)


def load_policy(path: str, env):
    """A trained policy checkpoint (any kind `eval-policy` loads), checked against the env."""
    from pipelines.evaluation.driver import ArmOptions, load_source

    loaded = load_source(path, ArmOptions())
    loaded.check(env)
    return loaded.make(env)


def make_env(cfg: CollectConfig, seed: int):
    """(the episode's env, the simulator env its controllers and policies are built on).

    The simulator: one `SO101Env`, both. `--robot emulated`: an `ArmWorkcell` on an
    `EmulatedSO101` and its coupled simulator env. `--robot real`: an `ArmWorkcell` on the
    follower and cameras, and a simulator env that only gives the spaces policies are checked
    against."""
    from actors.collection.workcell import ArmWorkcell
    from pipelines.simulator import SO101Env

    if cfg.robot == "sim":
        env = SO101Env(
            cfg.task,
            fps=cfg.fps,
            image_size=cfg.image_size,
            action_mode="joint",
            max_episode_steps=cfg.max_steps,
        )
        return env, env
    if cfg.robot == "emulated":
        cell = ArmWorkcell.emulated(cfg.task, seed, cfg.image_size, cfg.max_steps, cfg.fps)
        return cell, cell.sim_env
    from actors.camera import CameraError
    from actors.feetech.bus import BusError
    from pipelines.robot import camera_sources

    try:
        cell = ArmWorkcell.real(
            cfg.follower_port,
            follower_calibration(cfg),
            camera_sources(cfg.camera),
            cfg.task,
            cfg.image_size,
            cfg.max_steps,
            cfg.fps,
        )
    except (BusError, CameraError) as e:  # a port or camera the user named that does not answer
        raise DatasetError(f"--robot real: {e}") from None
    return cell, cell.sim_env


def make_responders(cfg: CollectConfig, env, seed: int) -> list:
    from actors.collection.episode import ControllerResponder, PolicyResponder
    from pipelines.simulator.controllers import CONTROLLERS

    out = []
    for name in cfg.responder_names():
        short = name.removeprefix("controller:")
        if short in CONTROLLERS:
            out.append(ControllerResponder(short, env, seed))
        else:
            out.append(PolicyResponder(name, load_policy(name, env), env))
    return out


def selector_checkpoint(path: str) -> Path | None:
    """A train-selector checkpoint at `path` (or the latest of a run folder there), if any."""
    from pipelines.runtime.training import checkpoint_kind, latest_checkpoint
    from pipelines.selection.model import KIND

    if not Path(path).is_dir():
        return None
    if checkpoint_kind(path) == KIND:
        return Path(path)
    return latest_checkpoint(path, KIND)


def make_selector(cfg: CollectConfig, env, seed: int):
    from pipelines.selection.selector import ActionSelector, PolicyDistanceScorer

    scorer = None
    learned = selector_checkpoint(cfg.scorer) if cfg.scorer else None
    if learned is not None:  # the trained P(approve | state, candidate): its logits
        from pipelines.selection.model import ApprovalScorer

        scorer = ApprovalScorer(learned)
        scorer.check(env)
    elif cfg.scorer:
        scoring = _PolicyAction(cfg.scorer, env, seed)
        scoring.reset(seed)

        def action_at(obs):
            return env.unwrapped.joint_targets(scoring(obs, {}))

        scorer = PolicyDistanceScorer(action_at, cfg.score_scale)
    return ActionSelector(
        cfg.selector,
        epsilon=cfg.epsilon,
        temperature=cfg.temperature,
        scorer=scorer,
        seed=seed + 1,
    )


def rollout_episode(
    plan: CollectPlan,
    cfg: CollectConfig,
    root: str,
    collection_id: str,
    admin=None,
    responders: list | None = None,
):
    """Roll one episode out, writing its videos; returns (metadata with log lines, table).

    `admin` / `responders`: given through the API (`run`), else from `--approver` /
    `--responders`."""
    from actors.collection.episode import run_collection_episode

    env, sim_env = make_env(cfg, plan.seed)
    try:
        if responders is None:
            responders = make_responders(cfg, sim_env, plan.seed)
        driver = _PolicyAction(cfg.driver, sim_env, plan.seed)
        selector = make_selector(cfg, sim_env, plan.seed)
        world = env.unwrapped.world  # None on a real arm
        start = {"distance": None}

        def positions(w):
            if start["distance"] is None:
                start["distance"] = w.grasp_distance
            return stage_positions(w, start["distance"])

        outcome = run_collection_episode(
            env,
            driver,
            responders,
            selector,
            CriticalRule.parse(cfg.critical),
            admin if admin is not None else parse_approver(cfg.approver, cfg.robot),
            plan.seed,
            stage_positions=positions,
        )
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    frames = outcome.frames
    size = cfg.image_size
    videos = {k: episode_video(root, cfg.format, plan.index, k) for k in CAMERAS}
    writers = {k: VideoWriter(videos[k], cfg.fps, size, size, cfg.vcodec) for k in CAMERAS}
    image_stats = {k: ImageStats() for k in CAMERAS}
    try:
        for f in frames:
            for k, w in writers.items():
                w.write(f.observation[k])
                image_stats[k].add(f.observation[k])
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()

    n = len(frames)
    done = np.zeros(n, dtype=bool)
    done[-1] = True
    fps = np.float32(cfg.fps)
    table = frames_table(
        {
            "observation.state": np.stack([f.observation["observation.state"] for f in frames]),
            "action": np.stack([f.action for f in frames]).astype(np.float32),
            "timestamp": np.arange(n, dtype=np.float32) / fps,
            "frame_index": np.arange(n),
            "episode_index": np.full(n, plan.index),
            "task_index": np.zeros(n, dtype=np.int64),
            "next.reward": np.array([f.reward for f in frames], dtype=np.float32),
            "next.done": done,
            **ground_truth(frames, world, outcome.final_progress),
            "data_type": np.full(n, "auto", dtype=object),
            "complementary_info.is_intervention": np.zeros(n, dtype=bool),
            "action_propensity": np.array([f.propensity for f in frames], dtype=np.float32),
            "selector_mode": np.full(n, cfg.selector, dtype=object),
            "approval_status": np.array([f.approval_status for f in frames], dtype=object),
            "candidate_actions": np.stack([f.candidates for f in frames]).astype(np.float32),
            "selected_candidate": np.array([f.selected_candidate for f in frames], np.int64),
        },
        {
            "candidate_actions": {
                "dtype": "float32",
                "shape": list(frames[0].candidates.shape),
                "names": None,
            }
        },
    )
    stats = table_stats(table)
    for k, acc in image_stats.items():
        stats[k] = acc.result()
    log = [log_entry(plan.index, i, f, cfg, collection_id) for i, f in enumerate(frames)]
    meta = {
        "episode_index": plan.index,
        "length": n,
        "success": outcome.success,
        "critical_states": outcome.critical_states,
        "rejections": outcome.rejections,
        "stats": stats,
        "videos": {k: str(v) for k, v in videos.items()},
        "log": log,
    }
    return meta, table


def ground_truth(frames: list, world, final_progress: float) -> dict:
    """The simulator's progress columns (synth's); none on a real arm, which has no world."""
    if world is None:
        return {}
    n, n_stages = len(frames), len(world.stages)
    return {
        "progress": np.array([f.progress for f in frames], dtype=np.float32),
        "stage_progress_gt": stage_progress(
            np.array([f.stage for f in frames]),
            np.array([f.stage_scores for f in frames])[:, :n_stages],
            n_stages,
        ),
        "progress_gt": (np.arange(n) / max(n - 1, 1) * final_progress).astype(np.float32),
    }


def log_entry(episode: int, frame_index: int, frame, cfg: CollectConfig, collection_id: str):
    """The propensity log's line for one frame: the seed's fields first, then ours."""
    meta = frame.log
    return {
        "episode_index": episode,
        "state_id": frame.state_id,
        "frame_index": frame_index,
        "timestamp": frame_index / cfg.fps,
        "is_critical": frame.is_critical,
        "approval_status": None if frame.approval_status == "none" else frame.approval_status,
        "action_propensity": frame.propensity,
        "selector_mode": meta["selector_mode"],
        "epsilon": meta["epsilon"],
        "resampled": meta["resampled"],
        "num_candidate_actions": meta["num_candidate_actions"],
        "num_already_executed": meta["num_already_executed"],
        "candidate_propensities": meta["candidate_propensities"],
        "candidate_scores": meta.get("candidate_scores"),
        "selected_candidate": frame.selected_candidate,
        "unconditional_propensity": meta.get("unconditional_propensity", 1.0),
        "already_executed": meta.get("already_executed", []),
        "collection_id": collection_id,
    }


def rollout_group(
    plans: list[CollectPlan],
    cfg: CollectConfig,
    root: str,
    collection_id: str,
    admin=None,
    responders: list | None = None,
):
    """Ray task body: several episodes; returns (their metadata, their tables)."""
    metas, tables = [], []
    for plan in plans:
        meta, table = rollout_episode(plan, cfg, root, collection_id, admin, responders)
        metas.append(meta)
        tables.append(table)
    return metas, tables


@dataclass
class CollectResult:
    root: Path
    episodes: list[dict]
    frames: int
    seconds: float
    collection_id: str
    log_lines: int


def run(cfg: CollectConfig, out=print, admin=None, responders: list | None = None) -> CollectResult:
    """Collect the dataset (module docstring); DatasetError for bad options.

    The API: `admin` (anything with `review(attempt) -> bool`, e.g. `APIAdmin(approve)`)
    replaces `--approver`; `responders` (`actors.collection.episode.Responder`s, e.g.
    `APIResponder`)
    replace `--responders`. Both are sent to the episodes' Ray tasks, so they must pickle."""
    t0 = time.time()
    cfg.validate(api_admin=admin is not None, api_responders=responders is not None)
    names = (
        cfg.responder_names()
        if responders is None
        else [getattr(r, "name", type(r).__name__) for r in responders]
    )
    check_job_output(cfg.out, "output dataset")
    root = Path(cfg.out).resolve()
    created = not root.exists()
    if root.exists() and interrupted_collection(root):
        for sub in ("data", "videos", "meta"):  # the interrupted run's outputs, not the log
            shutil.rmtree(root / sub, ignore_errors=True)
        remove_stale_temps(root)
    root.mkdir(parents=True, exist_ok=True)
    collection_id = uuid.uuid4().hex
    plans = plan_episodes(cfg)

    import ray

    from pipelines.runtime.cluster import cluster_cpus, connect
    from pipelines.synth import write_rollouts

    connect(cfg.ray_address)
    if cfg.robot == "real":  # one arm (and the keyboard) here: its episodes one after another
        groups = [np.arange(len(plans))]
        try:
            metas_tables = rollout_group(plans, cfg, str(root), collection_id, admin, responders)
        except DatasetError:
            if created:  # the arm or a camera did not open: nothing stays on disk
                shutil.rmtree(root, ignore_errors=True)
            raise
        refs = [[ray.put(part) for part in metas_tables]]
    else:
        n_groups = max(1, min(len(plans), 2 * cluster_cpus()))
        groups = [g for g in np.array_split(np.arange(len(plans)), n_groups) if len(g)]
        task = ray.remote(num_cpus=1, num_returns=2)(rollout_group)
        refs = [
            task.remote([plans[i] for i in g], cfg, str(root), collection_id, admin, responders)
            for g in groups
        ]
    metas = []
    with PropensityLog(root) as log:
        for ref in refs:  # in episode order: each group's lines as soon as it is back
            for meta in ray.get(ref[0]):
                for entry in meta.pop("log"):
                    log.append(entry)
                metas.append(meta)
        lines = log.lines
    metas.sort(key=lambda m: m["episode_index"])
    atomic_write_json(
        root / COLLECT_META,
        {
            "collection_id": collection_id,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "ray_address")},
            "responders": names,
            "candidate_count": len(names),
            "admin": cfg.approver if admin is None else type(admin).__name__,
            "episodes": [
                {
                    k: m[k]
                    for k in ("episode_index", "length", "success", "critical_states", "rejections")
                }
                for m in metas
            ],
        },
    )
    total = write_rollouts(root, cfg, groups, refs, metas)
    episodes = [{k: v for k, v in m.items() if k not in ("stats", "videos")} for m in metas]
    return CollectResult(root, episodes, total, time.time() - t0, collection_id, lines)


def summary_lines(result: CollectResult) -> list[str]:
    eps = result.episodes
    crit = sum(e["critical_states"] for e in eps)
    rej = sum(e["rejections"] for e in eps)
    return [
        f"  {sum(e['success'] for e in eps)}/{len(eps)} episodes succeeded",
        f"  {crit} critical states, {rej} rejected attempts (undone and resampled)",
        f"  propensity log: {result.root / LOG_NAME} ({result.log_lines} lines)",
    ]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="new dataset folder (or an interrupted collect's, to rerun)")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="reach_grasp", help="reach_grasp (default) or pick_lift")
    p.add_argument("--selector", default="random", help=f"selector mode: {', '.join(MODES)}")
    p.add_argument("--epsilon", type=float, default=0.1, help="epsilon_greedy's epsilon (0.1)")
    p.add_argument("--temperature", type=float, default=1.0, help="the softmax temperature")
    p.add_argument(
        "--scorer",
        default=None,
        help="epsilon_greedy/learned: a train-selector checkpoint (score: the approval logit), "
        "or a controller or policy checkpoint (score: minus the candidate's distance to its "
        "action, in --score-scale units)",
    )
    p.add_argument("--score-scale", type=float, default=5.0, help="joint-space distance unit")
    p.add_argument(
        "--responders",
        default=DEFAULT_RESPONDERS,
        help=f"comma-separated controllers or policy checkpoints ({DEFAULT_RESPONDERS})",
    )
    p.add_argument("--driver", default="noisy", help="who acts on plain frames (noisy)")
    p.add_argument(
        "--critical",
        default="grasp+every:10",
        help="critical states: grasp (entering the grasp region), every:K, or grasp+every:K",
    )
    p.add_argument(
        "--approver",
        default="progress:0.002",
        help="progress:T: approve when the task progress gains at least T (0.002; on "
        "--robot emulated, the coupled simulator's progress); keyboard: a person (real arm)",
    )
    p.add_argument(
        "--robot",
        default="sim",
        help="sim (default): the simulator, exact undo; emulated: an emulated SO-101 through "
        "the real Feetech driver (follower coupled to the simulator, cameras rendering it; "
        "undo moves the arm back, the cube stays); real: a real follower (--follower-port, "
        "--follower-id, --camera front=S --camera wrist=S; --approver keyboard, policy "
        "responders, --critical every:K)",
    )
    p.add_argument("--follower-port", default=None, help="a real arm's follower serial port")
    p.add_argument("--follower-id", default=None, help="the follower's calibration name")
    p.add_argument("--calibration-dir", default=None)
    p.add_argument("--camera", action="append", default=[], metavar="NAME=SOURCE")
    p.add_argument(
        "--max-steps", type=int, default=None, help="an episode's step limit (the task's)"
    )
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--vcodec", default=None)
    p.add_argument("--format", default=V21, help=f"{V21} (default) or {V30}")
    p.add_argument("--ray-address", default=None)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel collect") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = CollectConfig(**vars(args))
    try:
        result = run(cfg)
    except (DatasetError, ClusterError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(
        f"Collected {len(result.episodes)} episodes, {result.frames} frames in "
        f"{result.seconds:.1f} s ({cfg.selector} selector)"
    )
    for line in summary_lines(result):
        print(line)
    print(f"Dataset: {result.root}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.collect"))
