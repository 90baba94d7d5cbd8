"""`flywheel train-policy DATASET`: Stage 3, an advantage-conditioned policy on Ray Train.

AWBC (`--conditioning prompt`, the default: the policy sees each frame's labeled prompt
"<task>, Advantage: positive|negative", with indicator dropout) or plain BC
(`--conditioning none`), optionally weighted (`--weighting awr|iql`), filtered
(`--drop-negative`) and weighted or balanced by data type. The design is in
`pipelines.policy` (config, model, data, scan, weighting, learner, training); this
module parses the flags.

Also `python -m pipelines.train_policy` (for `ray job submit`).
"""

from __future__ import annotations

from pipelines.policy.config import PolicyTrainConfig
from pipelines.policy.training import run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.training import TrainingResult, training_summary


def report(cfg: PolicyTrainConfig, result: TrainingResult) -> list[str]:
    m = result.metrics
    extra = f", held-out L1 {m['heldout_l1']:.4f}" if "heldout_l1" in m else ""
    done = (
        f"Trained {cfg.run_name} to step {result.step} in {result.seconds:.0f} s "
        f"({m.get('cpu_seconds', float('nan')) / 60:.1f} CPU-minutes): "
        f"L1 {m.get('l1', float('nan')):.4f}{extra}"
    )
    summary = training_summary(result, cfg.run_name, cfg.run.steps, done)
    return [summary, f"Checkpoint: {result.checkpoint}"]


JOB = Job("train-policy", __doc__, PolicyTrainConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_policy"))
