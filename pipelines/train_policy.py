"""`flywheel train-policy DATASET`: Stage 3, an advantage-conditioned policy on Ray Train.

AWBC (`--conditioning prompt`, the default: the policy sees each frame's labeled prompt
"<task>, Advantage: positive|negative", with indicator dropout) or plain BC
(`--conditioning none`), optionally weighted (`--weighting awr|iql`), filtered
(`--drop-negative`) and weighted or balanced by data type. The design is in
`pipelines.policy` (model, data, weighting, learner, train); this module parses the flags.

Also `python -m pipelines.train_policy` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.policy.data import DEFAULT_DATA_TYPE_WEIGHTS
from pipelines.policy.driver import (
    CONDITIONINGS,
    CURRICULA,
    SIM_TASKS,
    TrainPolicyConfig,
    run,
)
from pipelines.policy.model import ACTION_FRAMES
from pipelines.policy.weighting import WEIGHTINGS
from pipelines.runtime.cli import JobParser, run_job

D = TrainPolicyConfig("")


def _episodes(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of episode indices"
        ) from None


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument(
        "--data-dir", default="data", help="the episode files' folder (e.g. data_KAI0_<step>)"
    )
    g = p.add_argument_group("conditioning and weighting")
    g.add_argument(
        "--conditioning",
        choices=CONDITIONINGS,
        default=D.conditioning,
        help="prompt: AWBC on the labeled prompt; none: plain BC on the bare task",
    )
    g.add_argument(
        "--indicator-dropout",
        type=float,
        default=D.indicator_dropout,
        help="share of frames trained on the bare task text (default 0.3)",
    )
    g.add_argument(
        "--drop-negative", action="store_true", help="train only on top-label frames (filtered BC)"
    )
    g.add_argument("--weighting", choices=WEIGHTINGS, default=D.weighting)
    g.add_argument(
        "--advantage-column",
        default=D.advantage_column,
        help="float column A for --weighting awr (default absolute_advantage)",
    )
    g.add_argument("--temperature", type=float, default=D.temperature)
    g.add_argument("--max-weight", type=float, default=D.max_weight)
    g.add_argument("--expectile", type=float, default=D.expectile)
    g.add_argument("--discount", type=float, default=D.discount)
    g.add_argument("--target-tau", type=float, default=D.target_tau)
    g.add_argument(
        "--data-type-weights",
        default=DEFAULT_DATA_TYPE_WEIGHTS,
        help=f"loss weight per data_type (default {DEFAULT_DATA_TYPE_WEIGHTS})",
    )
    g.add_argument(
        "--balance-data-types", action="store_true", help="sample every data type equally"
    )
    g = p.add_argument_group("propensity weighting (datasets from flywheel collect, seed 000)")
    g.add_argument(
        "--importance-weights",
        action="store_true",
        help="weight each frame by clamp(pi(a_sel | s, candidates) / action_propensity, 0, "
        "--max-importance-weight), pi the policy's softmax over the logged candidates",
    )
    g.add_argument("--max-importance-weight", type=float, default=D.max_importance_weight)
    g.add_argument(
        "--self-normalize", action="store_true", help="sum(w L) / sum(w) over each batch"
    )
    g.add_argument(
        "--candidate-scale",
        type=float,
        default=D.candidate_scale,
        help="distance (action units) per unit of pi's softmax score (default 5)",
    )
    g.add_argument(
        "--curriculum",
        choices=CURRICULA,
        default=D.curriculum,
        help="propensity: the first --curriculum-fraction of the steps draw only frames with "
        "action_propensity >= --curriculum-min-propensity, then all",
    )
    g.add_argument("--curriculum-min-propensity", type=float, default=D.curriculum_min_propensity)
    g.add_argument("--curriculum-fraction", type=float, default=D.curriculum_fraction)
    g = p.add_argument_group("model")
    g.add_argument("--image-size", type=int, default=D.image_size)
    g.add_argument("--encoder", default=D.encoder, help="an encoder of pipelines.vision.encoders")
    g.add_argument("--chunk-size", type=int, default=D.chunk_size)
    g.add_argument(
        "--n-action-steps",
        type=int,
        default=D.n_action_steps,
        help="actions executed per prediction at evaluation (default 5)",
    )
    g.add_argument("--action-frame", choices=ACTION_FRAMES, default=D.action_frame)
    g.add_argument("--no-augment", action="store_true", help="no random-shift augmentation")
    g = p.add_argument_group("run")
    g.add_argument("--workers", type=int, default=D.workers, help="DDP workers (default 2)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0)
    g.add_argument(
        "--cpus-per-worker",
        type=int,
        default=None,
        help="default: the cluster's CPUs divided among the workers",
    )
    g.add_argument("--steps", type=int, default=D.steps)
    g.add_argument(
        "--batch-size", type=int, default=D.batch_size, help="frames per worker per step"
    )
    g.add_argument("--lr", type=float, default=D.lr)
    g.add_argument("--checkpoint-every", type=int, default=D.checkpoint_every)
    g.add_argument("--holdout", type=float, default=D.holdout, help="share of held-out episodes")
    g.add_argument(
        "--holdout-episodes",
        type=_episodes,
        default=None,
        help="held-out episodes, e.g. 3,17,40 (instead of --holdout)",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--name", default=None, help="run name (default policy-<arm>)")
    g.add_argument("--storage", default=D.storage, help="where runs and checkpoints go")
    g.add_argument("--max-failures", type=int, default=D.max_failures)
    g.add_argument(
        "--sim-task",
        choices=SIM_TASKS,
        default=None,
        help="simulated task eval-policy runs (default: from the task text)",
    )
    g.add_argument("--ray-address", default=None)
    g.add_argument("--no-mlflow", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-policy") -> int:
    args = build_parser(prog).parse_args(argv)
    values = vars(args)
    cfg = TrainPolicyConfig(
        **{k: v for k, v in values.items() if k not in ("no_mlflow", "no_augment")},
        mlflow=not args.no_mlflow,
        augment=not args.no_augment,
    )
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    if m.get("resumed_from") == result.step:
        print(f"{cfg.run_name} is already trained to step {result.step} (--steps {cfg.steps})")
        print(f"Checkpoint: {result.checkpoint}")
        return 0
    extra = f", held-out L1 {m['heldout_l1']:.4f}" if "heldout_l1" in m else ""
    print(
        f"Trained {cfg.run_name} to step {result.step} in {result.seconds:.0f} s "
        f"({m.get('cpu_seconds', float('nan')) / 60:.1f} CPU-minutes): "
        f"L1 {m.get('l1', float('nan')):.4f}{extra}"
    )
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.train_policy"))
