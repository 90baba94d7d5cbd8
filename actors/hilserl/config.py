"""`flywheel hilserl`'s config: one `HilserlConfig` nesting the learner's, the collectors', the
agent's and the robot's sections, built from the job's flags (`config_from_flags`) and handed
down whole: the learner actor gets `learner`, each collector `collector` and `robot`, and both
the agent's config the run resolves from `agent` (`pipelines.rl.config`).

`EpisodeSpec` is what the driver resolves for every collector's episodes (cameras, image size,
frame stack, whether images are kept, their length), `RESUME_KEYS` the settings a resumed run
must keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from actors.so101 import RobotConfig
from pipelines.rl.config import AgentHyperparameters
from pipelines.runtime.flags import FlagConfig
from pipelines.simulator.tasks import CAMERAS, DEFAULT_TASK

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

    steps: int = 20_000  # env steps to collect
    batch_size: int = 256
    online_capacity: int = 100_000
    offline_capacity: int = 100_000
    online_ratio: float = 0.5  # the share of a batch from the online buffer
    offline_dataset: str | None = None  # a LeRobot dataset seeding the offline buffer
    learning_starts: int = 100
    updates_per_step: float = 1.0  # learner steps per env step (0: free)
    max_lag: int = 200  # learner steps behind before collectors wait
    random_steps: int = 500  # uniform random actions for the run's first env steps
    push_every: int = 50  # learner steps between weight pushes
    checkpoint_every: int = 1000  # env steps between checkpoints
    q_alarm_patience: int = 100
    silent_after_s: float = 120.0  # seconds before a quiet collector is reported
    learner_threads: int | None = None  # None: 1
    seed: int = 0

    @property
    def threads(self) -> int:
        return max(1, self.learner_threads or 1)


@dataclass
class CollectorConfig:
    """The collectors' section: the task, the operator and the reward (sent to each one)."""

    task: str = DEFAULT_TASK
    fps: int = 10
    collectors: int = 1  # (sim, emulated) collectors, each with its own robot
    operator: bool = True  # the simulated operator supervises the policy
    reward: str = "sim"  # sim | classifier
    reward_app: str = "reward"  # the Serve application scoring frames (--reward classifier)
    reward_url: str | None = None  # or its HTTP endpoint
    terminate_on_success: bool = True
    success_frames: int = 1  # classifier: consecutive frames it must call a success


@dataclass
class HilserlRobotConfig:
    """The robot's section: the simulator, an emulated SO-101 or a real one (its ports)."""

    env: str = "sim"
    robot: str | None = None  # None: the simulator, or a real arm when ports are given
    arm: RobotConfig = field(default_factory=RobotConfig)

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

    learner: HilserlLearnerConfig = field(default_factory=HilserlLearnerConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    agent: AgentHyperparameters = field(default_factory=AgentHyperparameters)
    robot: HilserlRobotConfig = field(default_factory=HilserlRobotConfig)
    encoder: str | None = None  # drqv2 | frozen:CHECKPOINT (default: the job's docstring)
    image_size: int | None = None  # None: the frozen encoder's, else 64
    record: bool = True
    name: str | None = None
    storage: str = "flywheel-runs"
    ray_address: str | None = None
    mlflow: bool = True
    quiet: bool = False

    @property
    def run_name(self) -> str:
        return self.name or "hilserl"

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.run_name
