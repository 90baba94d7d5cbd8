"""`flywheel hilserl`'s config: one `HilserlConfig` nesting the learner's, the collectors', the
agent's and the robot's sections, whose `flag()` fields are the job's flags
(`pipelines.runtime.flags`; `--camera` and `--terminate-on-success` the job adds by hand, as
`flag()` declares neither a repeated flag nor a `--x/--no-x` pair), built from them
(`config_from_flags`) and handed down whole: the learner actor gets `learner`, each collector
`collector` and `robot`, and both the agent's config the run resolves from `agent`
(`pipelines.rl.config`).

`EpisodeSpec` is what the driver resolves for every collector's episodes (cameras, image size,
frame stack, whether images are kept, their length), `RESUME_KEYS` the settings a resumed run
must keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from actors.so101 import RobotConfig
from pipelines.dataset import V21, V30
from pipelines.dataset.units import BODY_UNITS, UNITS_HELP
from pipelines.rl.config import AgentHyperparameters
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.simulator.tasks import CAMERAS, DEFAULT_TASK, TASKS

# Settings that define what a run trains; a resumed run must keep them (`check_run`).
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
class HilserlLearnerConfig:
    """The learner's section: the run's length, its replay buffers, pacing and checkpoints."""

    steps: int = flag(20_000, "env steps to collect")
    batch_size: int = flag(256, "transitions per update")
    online_capacity: int = flag(100_000, "online buffer size (transitions)")
    offline_capacity: int = flag(100_000, "offline buffer size (transitions)")
    online_ratio: float = flag(0.5, "the share of a batch from the online buffer")
    offline_dataset: str | None = flag(None, "a LeRobot dataset seeding the offline buffer")
    offline_units: str | None = flag(
        None, UNITS_HELP.format("the offline dataset's"), choices=BODY_UNITS
    )
    offline_calibration: str | None = flag(
        None,
        "the calibration of the arm that recorded the offline dataset, to convert its "
        "range_m100_100 joints to degrees: a JSON file (LeRobot's schema) or a follower id in "
        "LeRobot's calibration folders",
        metavar="FILE|ID",
    )
    learning_starts: int = flag(100, "online transitions before training")
    updates_per_step: float = flag(1.0, "learner steps per env step (0: free)")
    max_lag: int = flag(200, "learner steps behind before collectors wait")
    random_steps: int = flag(500, "uniform random actions for the first env steps")
    push_every: int = flag(50, "learner steps between weight pushes")
    checkpoint_every: int = flag(1000, "env steps between checkpoints")
    q_alarm_patience: int = flag(100, "steps of Q above its bound before an alarm")
    silent_after_s: float = flag(
        120.0,
        "seconds before a quiet collector is reported",
        option="silent-after",
        metavar="SECONDS",
    )
    learner_threads: int | None = flag(None, "the learner's torch threads; unset: 1")
    seed: int = flag(0, "the run's seed")

    @property
    def threads(self) -> int:
        return max(1, self.learner_threads or 1)


@dataclass
class CollectorConfig:
    """The collectors' section: the task, the operator and the reward (sent to each one)."""

    task: str = flag(DEFAULT_TASK, f"the task: one of {', '.join(TASKS)}")
    fps: int = flag(10, "control ticks per second")
    collectors: int = flag(1, "collectors, each with its own robot")
    operator: bool = flag(True, "(sim) no simulated operator")  # the flag is --no-operator
    reward: str = flag("sim", "sim or classifier")
    reward_app: str = flag("reward", "the Serve application (classifier)")
    reward_url: str | None = flag(None, "or the classifier's HTTP endpoint")
    # both --terminate-on-success and --no-terminate-on-success (pipelines.hilserl adds them)
    terminate_on_success: bool = flag(True, "a success ends the episode", both=True)
    success_frames: int = flag(1, "classifier reward: consecutive frames it must call a success")


@dataclass
class HilserlRobotConfig:
    """The robot's section: the simulator, an emulated SO-101 or a real one (its ports)."""

    env: str = flag("sim", "sim (a real or emulated arm: --robot)")
    robot: str | None = flag(None, "emulated: an emulated SO-101 through its driver")
    arm: RobotConfig = section(RobotConfig)

    @property
    def kind(self) -> str:
        """sim | emulated | real, once the driver has resolved `robot` (`checks.robot_kind`)."""
        return self.robot or "sim"


@dataclass
class EpisodeSpec:
    """What every collector's episodes hold, as the driver resolved it."""

    cameras: list[str] = field(default_factory=lambda: list(CAMERAS))
    image_size: int = 64
    frame_stack: int = 1
    keep_images: bool = True  # ship camera frames (drqv2 encoder, or recording)
    max_episode_steps: int | None = None  # None: the task's time limit


@dataclass
class HilserlConfig(FlagConfig):
    """`flywheel hilserl`'s config (module docstring); `from_flags(**flat)` for callers."""

    learner: HilserlLearnerConfig = section(HilserlLearnerConfig)
    collector: CollectorConfig = section(CollectorConfig)
    agent: AgentHyperparameters = section(AgentHyperparameters)
    robot: HilserlRobotConfig = section(HilserlRobotConfig)
    encoder: str | None = flag(None, "drqv2 or frozen:CHECKPOINT")  # unset: the job's docstring
    image_size: int | None = flag(None, "camera frames; unset: the frozen encoder's, else 64")
    record: bool = flag(True, "do not record the online episodes")  # the flag is --no-record
    record_format: str | None = flag(  # None: v3.0 for a new recording, its own when resumed
        None,
        "LeRobot layout of a new recording: v3.0 (unset) or v2.1; a resumed run keeps its own",
        choices=[V30, V21],
    )
    name: str | None = flag(None, "the run's name; unset: hilserl")
    storage: str = flag("flywheel-runs", "where runs and checkpoints go")
    ray_address: str | None = flag(None, "the Ray cluster; unset: a local one")
    mlflow: bool = flag(True, "log nothing to MLflow")
    quiet: bool = flag(False, "print no progress lines")

    @property
    def run_name(self) -> str:
        return self.name or "hilserl"

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.run_name
