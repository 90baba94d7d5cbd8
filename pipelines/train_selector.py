"""`flywheel train-selector DATASET`: the learned selector, P(approve | state, candidate).

Trains `pipelines.selection.model.ApprovalModel` on the critical attempts of a dataset from
`flywheel collect` (approved: 1, rejected: 0; `pipelines.selection.training`), class-balanced,
on Ray Train (DDP), checkpointed and resumable as every Flywheel run; held-out episodes give
the accuracy and the mean log-loss at the end.

The checkpoint is the `learned` selector's scorer: `flywheel collect --selector learned
--scorer <checkpoint>` (`ApprovalScorer`, softmax of the approval logits over the candidates).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.run_config import add_run_flags
from pipelines.selection.config import SelectorRunConfig, SelectorTrainConfig
from pipelines.selection.training import run


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a dataset of flywheel collect (with approval_status)")
    p.add_argument("--image-size", type=int, default=32, help="the model's input size in pixels")
    p.add_argument(
        "--encoder", default="small_convnet", help="an encoder of pipelines.vision.encoders"
    )
    p.add_argument("--cameras", default=None, help="comma-separated cameras; unset: all")
    add_run_flags(p, SelectorRunConfig(), batch_help="attempts per worker per step")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-selector") -> int:
    cfg = build_parser(prog).parse_config(argv, SelectorTrainConfig.from_flags)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    extra = (
        f", held-out accuracy {m['heldout_accuracy']:.3f} on {m['heldout_attempts']} attempts"
        if "heldout_accuracy" in m
        else ""
    )
    loss = m.get("loss", float("nan"))
    print(f"Trained {cfg.run_name} to step {result.step}: loss {loss:.4f}{extra}")
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_selector"))
