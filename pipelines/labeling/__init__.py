"""Stage 0 labeling: progress to advantage to the labeled prompt (`flywheel label`'s library).

advantage         the math: rewards from progress, percentile cuts, labels, task texts
config            LabelConfig (the options and their checks)
files             the per-file Ray task bodies: scan (pass 1) and staging (pass 2)
metadata          the dataset's tasks, and its relabeled metadata (staged)
report            LabelResult, the reference's statistics block, the MLflow run
driver            run(LabelConfig) -> LabelResult: the two passes and the two-phase commit
progress_dataset  a generator of small progress-only datasets (tests, benchmarks)
"""

from pipelines.labeling.config import LabelConfig
from pipelines.labeling.driver import run
from pipelines.labeling.report import LabelResult

__all__ = ["LabelConfig", "LabelResult", "run"]
