"""`flywheel collect`'s config: nested dataclasses, and every check of their options.

`CollectConfig` holds a `SelectionConfig` (how a candidate is drawn at a critical state) and the
shared `actors.so101.RobotConfig` (as `FollowerConfig`: a real follower's port, calibration and
cameras); its fields are the job's flags (`pipelines.runtime.flags`), and
`CollectConfig.from_flags(**fields)` builds one from flat fields (flag names), as the command
line does.
Nothing is written before `CollectConfig.validate` passes: every bad option is a one-line
DatasetError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actors.collection.episode import CriticalRule, KeyboardAdmin, ProgressAdmin
from actors.so101 import FollowerConfig, calibration_of
from pipelines.dataset import (
    LOCK,
    V21,
    V30,
    DatasetError,
    check_frame_size,
    resolve_video_codec,
)
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.selection.propensity import LOG_NAME, check_complete, log_path
from pipelines.selection.selector import MODES, SelectorError, check_mode
from pipelines.simulator.controllers import CONTROLLERS
from pipelines.simulator.tasks import CAMERAS, DEFAULT_TASK, TASK_NAMES, TASKS
from pipelines.synthesis.config import check_frame_rate_and_size

DEFAULT_RESPONDERS = "expert,hesitant,noisy,failing"
ROBOTS = ("sim", "emulated", "real")


@dataclass
class SelectionConfig:
    """How the selector picks a candidate (`pipelines.selection.selector.ActionSelector`)."""

    selector: str = flag("random", f"selector mode: {', '.join(MODES)}")
    epsilon: float = flag(0.1, "epsilon_greedy's epsilon")
    temperature: float = flag(1.0, "the softmax temperature")
    scorer: str | None = flag(
        None,
        "epsilon_greedy/learned: a train-selector checkpoint (score: the approval logit), or a "
        "controller or policy checkpoint (score: minus the candidate's distance to its action, "
        "in --score-scale units)",
    )
    score_scale: float = flag(5.0, "joint-space distance unit")  # a PolicyDistanceScorer's

    def validate(self) -> None:
        """One-line DatasetErrors (the mode is checked by `CollectConfig.validate`)."""
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


@dataclass
class CollectConfig(FlagConfig):
    out: str = flag(
        help="new dataset folder (or an interrupted collect's, to rerun)", positional=True
    )
    episodes: int = flag(help="episodes to collect")
    seed: int = flag(0, "seeds every episode's world and draws")
    task: str = flag(DEFAULT_TASK, f"the task: {', '.join(TASK_NAMES)}")
    selection: SelectionConfig = section(SelectionConfig)
    responders: str = flag(DEFAULT_RESPONDERS, "comma-separated controllers or policy checkpoints")
    driver: str = flag("noisy", "who acts on plain frames")
    critical: str = flag(
        "grasp+every:10",
        "critical states: grasp (entering the grasp region), every:K, or grasp+every:K",
    )
    approver: str = flag(
        "progress:0.002",
        "progress:T: approve when the task progress gains at least T (on --robot emulated, the "
        "coupled simulator's progress); keyboard: a person (real arm)",
    )
    robot: str = flag(
        "sim",
        f"{' | '.join(ROBOTS)}. sim: the simulator, exact undo; emulated: an emulated SO-101 "
        "through the real Feetech driver (follower coupled to the simulator, cameras rendering "
        "it; undo moves the arm back, the cube stays); real: a real follower (--follower-port, "
        "--follower-id, --camera front=S --camera wrist=S; --approver keyboard, policy "
        "responders, --critical every:K)",
    )
    arm: FollowerConfig = section(FollowerConfig)  # a real arm's follower and cameras
    max_steps: int | None = flag(None, "an episode's step limit (unset: the task's)")
    fps: int = flag(10, "control and video frame rate")
    image_size: int = flag(128, "camera image size (pixels)")
    vcodec: str | None = flag(None, "video codec: av1, h264 or mpeg4")
    format: str = flag(V30, f"LeRobot layout: {V30} or {V21}")
    ray_address: str | None = flag(None, "a Ray cluster to join (unset: local)")

    @property
    def text(self) -> str:
        return TASKS[self.task].text

    def responder_names(self) -> list[str]:
        return [r.strip() for r in self.responders.split(",") if r.strip()]

    def validate(self, api_admin: bool = False, api_responders: bool = False) -> None:
        """One-line DatasetErrors for bad options (nothing is written before this passes).

        `api_admin` / `api_responders`: `run` was given an admin / responders through the API
        (they replace `--approver` / `--responders`)."""
        if self.episodes < 1:
            raise DatasetError(f"--episodes {self.episodes}: at least 1")
        if self.task not in TASKS:
            raise DatasetError(f"--task {self.task!r}: one of {sorted(TASKS)}")
        self.check_robot()
        if self.max_steps is not None and self.max_steps < 1:
            raise DatasetError(f"--max-steps {self.max_steps}: at least 1")
        try:
            check_mode(self.selection.selector)
            CriticalRule.parse(self.critical)
        except SelectorError as e:
            raise DatasetError(f"--selector: {e}" if "mode" in str(e) else str(e)) from None
        self.selection.validate()
        names = [] if api_responders else self.responder_names()
        if not names and not api_responders:
            raise DatasetError(f"--responders {self.responders!r}: at least one responder")
        scorer = self.selection.scorer
        for name in [*names, self.driver, *([scorer] if scorer else [])]:
            check_source(name, self.robot)
        if not api_admin:
            parse_approver(self.approver, self.robot)
        check_frame_rate_and_size(self.fps, self.image_size)
        try:
            self.vcodec = resolve_video_codec(self.vcodec)
            check_frame_size(self.vcodec, self.image_size, self.image_size)
        except DatasetError as e:
            raise DatasetError(f"--vcodec/--image-size: {e}") from None
        if self.format not in (V21, V30):
            raise DatasetError(f"--format {self.format!r}: {V21} or {V30}")
        self.check_out()

    def check_out(self) -> None:
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a folder (nothing was written)")
        if out.exists() and not empty_folder(out) and not interrupted_collection(out):
            raise DatasetError(
                f"{out}: exists and is neither empty nor an interrupted collect (nothing was "
                "written)"
            )
        if out.exists():
            check_complete(log_path(out))

    def check_robot(self) -> None:
        if self.robot not in ROBOTS:
            raise DatasetError(f"--robot {self.robot!r}: one of {', '.join(ROBOTS)}")
        arm = self.arm
        for name, value in (("--leader-port", arm.leader_port), ("--leader-id", arm.leader_id)):
            if value:
                raise DatasetError(f"{name}: collect drives the follower only")
        real_only = {
            "--follower-port": arm.follower_port,
            "--follower-id": arm.follower_id,
            "--calibration-dir": arm.calibration_dir,
            "--camera": arm.camera,
        }
        if self.robot != "real":
            given = [flag for flag, value in real_only.items() if value]
            if given:
                raise DatasetError(f"{given[0]}: only with --robot real (a real arm)")
            return
        if not arm.follower_port:
            raise DatasetError("--robot real: needs --follower-port (the follower's serial port)")
        if not arm.follower_id:
            raise DatasetError("--robot real: needs --follower-id (which calibration to use)")
        if sorted(arm.camera_sources()) != sorted(CAMERAS):
            raise DatasetError(
                "--robot real: needs its two cameras, --camera front=SOURCE --camera wrist=SOURCE"
            )
        if CriticalRule.parse(self.critical).grasp:
            raise DatasetError(
                f"--critical {self.critical!r}: the grasp region needs the cube's position, "
                "which a real arm does not know; use every:K"
            )
        calibration_of(arm.follower_id, arm.calibrations, emulated=False)

    def recorded(self) -> dict:
        """The options as `meta/collect.json` records them: flat, without out / ray_address."""
        fields = {
            "seed": self.seed,
            "task": self.task,
            **vars(self.selection),
            "responders": self.responders,
            "driver": self.driver,
            "critical": self.critical,
            "approver": self.approver,
            "robot": self.robot,
            "follower_port": self.arm.follower_port,
            "follower_id": self.arm.follower_id,
            "calibration_dir": self.arm.calibration_dir,
            "camera": list(self.arm.camera),
        }
        for name in ("max_steps", "fps", "image_size", "vcodec", "format"):
            fields[name] = getattr(self, name)
        return fields


def empty_folder(out: Path) -> bool:
    """Nothing in `out` but a writer's lock file (a collect holding it, or killed)."""
    return all(p.name == LOCK for p in out.iterdir())


def interrupted_collection(out: Path) -> bool:
    return (out / LOG_NAME).exists() and not (out / "meta" / "info.json").exists()


def check_source(name: str, robot: str = "sim") -> None:
    """A responder/driver/scorer: a controller name or a policy checkpoint (folder)."""
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
