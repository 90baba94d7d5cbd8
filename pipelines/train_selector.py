"""`flywheel train-selector DATASET`: the learned selector, P(approve | state, candidate).

Trains `pipelines.selection.model.ApprovalModel` on the critical attempts of a dataset from
`flywheel collect` (approved: 1, rejected: 0; `pipelines.selection.training`), class-balanced,
on Ray Train (DDP), checkpointed and resumable as every Flywheel run; held-out episodes give
the accuracy and the mean log-loss at the end.

The checkpoint is the `learned` selector's scorer: `flywheel collect --selector learned
--scorer <checkpoint>` (`ApprovalScorer`, softmax of the approval logits over the candidates).
"""

from __future__ import annotations

from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.training import TrainingResult
from pipelines.selection.config import SelectorTrainConfig
from pipelines.selection.training import run


def report(cfg: SelectorTrainConfig, result: TrainingResult) -> list[str]:
    m = result.metrics
    extra = (
        f", held-out accuracy {m['heldout_accuracy']:.3f} on {m['heldout_attempts']} attempts"
        if "heldout_accuracy" in m
        else ""
    )
    loss = m.get("loss", float("nan"))
    return [
        f"Trained {cfg.run_name} to step {result.step}: loss {loss:.4f}{extra}",
        f"Checkpoint: {result.checkpoint}",
    ]


JOB = Job("train-selector", __doc__, SelectorTrainConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_selector"))
