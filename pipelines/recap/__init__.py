"""RECAP: value from episode outcomes (π*0.6, Evo-RL's pistar06), `flywheel outcomes`' library.

config    OutcomesConfig (the options of `flywheel outcomes`)
sources   where outcomes come from: `csv:FILE`, `reward`, `classifier:CKPT_OR_URL`, `set:...`
outcomes  run(OutcomesConfig) -> OutcomesResult: outcomes written into the episodes metadata;
          `dataset_targets`, the value targets of a dataset's episodes
targets   the value targets (pure numpy): normalized steps-to-success with a failure penalty
"""

from pipelines.recap.config import OutcomesConfig
from pipelines.recap.outcomes import OutcomesResult, dataset_targets, run
from pipelines.recap.targets import MissingOutcomeError, episode_targets, value_targets

__all__ = [
    "MissingOutcomeError",
    "OutcomesConfig",
    "OutcomesResult",
    "dataset_targets",
    "episode_targets",
    "run",
    "value_targets",
]
