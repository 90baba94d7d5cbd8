"""HIL-SERL's Ray actors and their driver.

`run(HilserlConfig)` (`driver`) runs `flywheel hilserl`: the `HilserlLearner` (`learner`, its
checkpoints in `checkpoints`), the collectors (`collector`, rolling episodes out in the
simulator, `sim_rollout`, or on an SO-101, `robot_rollout`), the recorder (`recording`). Its
config (`config`) nests the learner's, the collectors', the agent's and the robot's sections;
`checks` checks the inputs, `progress` and `report` report.
"""

from actors.hilserl.config import (
    CollectorConfig,
    EpisodeSpec,
    HilserlConfig,
    HilserlLearnerConfig,
    HilserlRobotConfig,
)
from actors.hilserl.driver import HilserlResult, run

__all__ = [
    "CollectorConfig",
    "EpisodeSpec",
    "HilserlConfig",
    "HilserlLearnerConfig",
    "HilserlResult",
    "HilserlRobotConfig",
    "run",
]
