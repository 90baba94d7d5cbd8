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

import argparse
from collections.abc import Sequence

from pipelines.policy.config import (
    CONDITIONINGS,
    CURRICULA,
    SIM_TASKS,
    PolicyLearnerConfig,
    PolicyNetworkConfig,
    PolicyRunConfig,
    PolicySamplingConfig,
    PolicyTrainConfig,
)
from pipelines.policy.model import ACTION_FRAMES
from pipelines.policy.training import run
from pipelines.policy.weighting import WEIGHTINGS
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.run_config import add_run_flags
from pipelines.runtime.training import already_trained

L, S, N = PolicyLearnerConfig(), PolicySamplingConfig(), PolicyNetworkConfig()


def _episodes(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of episode indices"
        ) from None


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a LeRobot dataset (labeled for --conditioning prompt)")
    p.add_argument(
        "--data-dir", default="data", help="the episode files' folder (e.g. data_KAI0_<step>)"
    )
    g = p.add_argument_group("conditioning and weighting")
    g.add_argument(
        "--conditioning",
        choices=CONDITIONINGS,
        default=L.conditioning,
        help="prompt: AWBC on the labeled prompt; none: plain BC on the bare task",
    )
    g.add_argument(
        "--indicator-dropout",
        type=float,
        default=L.indicator_dropout,
        help="share of frames trained on the bare task text",
    )
    g.add_argument(
        "--drop-negative", action="store_true", help="train only on top-label frames (filtered BC)"
    )
    g.add_argument(
        "--weighting", choices=WEIGHTINGS, default=L.weighting, help="per-frame loss weights"
    )
    g.add_argument(
        "--advantage-column",
        default=PolicyTrainConfig.advantage_column,
        help="float column A for --weighting awr",
    )
    g.add_argument(
        "--temperature", type=float, default=L.temperature, help="AWR/IQL weight temperature"
    )
    g.add_argument("--max-weight", type=float, default=L.max_weight, help="clip of AWR/IQL weights")
    g.add_argument("--expectile", type=float, default=L.expectile, help="IQL value expectile")
    g.add_argument("--discount", type=float, default=L.discount, help="IQL discount")
    g.add_argument(
        "--target-tau", type=float, default=L.target_tau, help="IQL target-critic update rate"
    )
    g.add_argument(
        "--data-type-weights",
        default=S.data_type_weights,
        help="loss weight per data_type",
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
    g.add_argument(
        "--max-importance-weight",
        type=float,
        default=L.max_importance_weight,
        help="clip of the importance weights",
    )
    g.add_argument(
        "--self-normalize", action="store_true", help="sum(w L) / sum(w) over each batch"
    )
    g.add_argument(
        "--candidate-scale",
        type=float,
        default=L.candidate_scale,
        help="distance (action units) per unit of pi's softmax score",
    )
    g.add_argument(
        "--curriculum",
        choices=CURRICULA,
        default=S.curriculum,
        help="propensity: the first --curriculum-fraction of the steps draw only frames with "
        "action_propensity >= --curriculum-min-propensity, then all",
    )
    g.add_argument(
        "--curriculum-min-propensity",
        type=float,
        default=S.curriculum_min_propensity,
        help="lowest propensity the curriculum's early steps draw",
    )
    g.add_argument(
        "--curriculum-fraction",
        type=float,
        default=S.curriculum_fraction,
        help="share of the steps in the curriculum's early phase",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--image-size", type=int, default=N.image_size, help="the model's input size in pixels"
    )
    g.add_argument("--encoder", default=N.encoder, help="an encoder of pipelines.vision.encoders")
    g.add_argument(
        "--chunk-size", type=int, default=N.chunk_size, help="actions predicted per frame"
    )
    g.add_argument(
        "--n-action-steps",
        type=int,
        default=N.n_action_steps,
        help="actions executed per prediction at evaluation",
    )
    g.add_argument(
        "--action-frame",
        choices=ACTION_FRAMES,
        default=N.action_frame,
        help="actions relative to the state, or absolute",
    )
    g.add_argument("--no-augment", action="store_true", help="no random-shift augmentation")
    g = p.add_argument_group("run")
    add_run_flags(
        g,
        PolicyRunConfig(),
        batch_help="frames per worker per step",
        name_help="run name; unset: policy-<arm>",
    )
    g.add_argument(
        "--holdout-episodes",
        type=_episodes,
        default=None,
        help="held-out episodes, e.g. 3,17,40 (instead of --holdout)",
    )
    g.add_argument(
        "--sim-task",
        choices=SIM_TASKS,
        default=None,
        help="simulated task eval-policy runs; unset: from the task text",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-policy") -> int:
    cfg = build_parser(prog).parse_config(argv, PolicyTrainConfig.from_flags)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    if already_trained(result, cfg.run_name, cfg.run.steps):
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
    exit_process(main(prog="python -m pipelines.train_policy"))
