"""The policy family's configs (`flywheel train-policy`) and its checkpoint kind.

`PolicyTrainConfig` nests four sections, each handed down whole to what uses it: `learner`
(the loss: conditioning, weighting, augmentation; `PolicyLearner` takes it), `sampling` (which
frames a batch draws), `network` (the model's shape and input) and `run` (workers, budget,
checkpoints). `recipe` is what a run trains: a rerun under the same name must keep it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.dataset.units import BODY_UNITS, UNITS_HELP
from pipelines.policy.data import DEFAULT_DATA_TYPE_WEIGHTS
from pipelines.policy.model import ACTION_FRAMES
from pipelines.policy.weighting import WEIGHTINGS
from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.runtime.run_config import RunConfig
from pipelines.simulator.tasks import TASK_NAMES

KIND = register_kind("policy", "flywheel train-policy")
CONDITIONINGS = ("prompt", "none")
SIM_TASKS = TASK_NAMES
CURRICULA = ("none", "propensity")


def parse_episodes(text: str) -> list[int]:
    """`--holdout-episodes 3,17,40`: the sorted episode indices."""
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of episode indices"
        ) from None


def episode_list(value) -> list[int]:
    """Episode indices from a flag's text, a list (a --config file's, whose items the flag's
    converter turned into lists each) or both nested: sorted, without repeats."""
    if isinstance(value, str):
        return parse_episodes(value)
    if isinstance(value, Sequence):
        return sorted({e for item in value for e in episode_list(item)})
    return [int(value)]


@dataclass
class PolicyLearnerConfig:
    """The loss of one training step (`pipelines.policy.learner`)."""

    conditioning: str = flag(
        "prompt",
        "prompt: AWBC on the labeled prompt; none: plain BC on the bare task",
        choices=CONDITIONINGS,
    )
    indicator_dropout: float = flag(0.3, "share of frames trained on the bare task text")
    weighting: str = flag("none", "per-frame loss weights", choices=WEIGHTINGS)
    temperature: float = flag(0.5, "AWR/IQL weight temperature")
    max_weight: float = flag(20.0, "clip of AWR/IQL weights")
    expectile: float = flag(0.7, "IQL value expectile")
    discount: float = flag(0.99, "IQL discount")
    target_tau: float = flag(0.005, "IQL target-critic update rate")
    fps: float = 10.0  # the dataset's (set by the driver): not a flag
    augment: bool = flag(True, "no random-shift augmentation")
    importance_weights: bool = flag(
        False,
        "propensity weighting (datasets from flywheel collect, seed 000): weight each frame by "
        "clamp(pi(a_sel | s, candidates) / action_propensity, 0, --max-importance-weight), pi "
        "the policy's softmax over the logged candidates",
    )
    max_importance_weight: float = flag(10.0, "clip of the importance weights")
    self_normalize: bool = flag(False, "sum(w L) / sum(w) over each batch")
    candidate_scale: float = flag(5.0, "distance (action units) per unit of pi's softmax score")


@dataclass
class PolicySamplingConfig:
    """Which frames a batch draws."""

    drop_negative: bool = flag(False, "train only on top-label frames (filtered BC)")
    data_type_weights: str = flag(DEFAULT_DATA_TYPE_WEIGHTS, "loss weight per data_type")
    balance_data_types: bool = flag(False, "sample every data type equally")
    curriculum: str = flag(
        "none",
        "propensity: the first --curriculum-fraction of the steps draw only frames with "
        "action_propensity >= --curriculum-min-propensity, then all",
        choices=CURRICULA,
    )
    curriculum_min_propensity: float = flag(
        0.5, "lowest propensity the curriculum's early steps draw"
    )
    curriculum_fraction: float = flag(0.5, "share of the steps in the curriculum's early phase")


@dataclass
class PolicyNetworkConfig:
    """The network's shape and input (the rest of `PolicyConfig` comes from the dataset)."""

    image_size: int = flag(64, "the model's input size in pixels")
    encoder: str = flag("spatial_softmax", "an encoder of pipelines.vision.encoders")
    chunk_size: int = flag(10, "actions predicted per frame")
    n_action_steps: int = flag(5, "actions executed per prediction at evaluation")
    action_frame: str = flag(
        "relative", "actions relative to the state, or absolute", choices=ACTION_FRAMES
    )


@dataclass
class PolicyRunConfig(RunConfig):
    """train-policy's run section (its defaults)."""

    steps: int = 3000  # with the defaults: ~11 CPU-minutes (2 workers, 2 cores)
    batch_size: int = flag(32, "frames per worker per step")
    holdout: float = 0.05
    name: str | None = flag(None, "run name; unset: policy-<arm>")


@dataclass
class PolicyTrainConfig(FlagConfig):
    dataset: str = flag(
        help="a LeRobot dataset (labeled for --conditioning prompt)", positional=True
    )
    data_dir: str = flag("data", "the episode files' folder (e.g. data_KAI0_<step>)")
    advantage_column: str = flag("absolute_advantage", "float column A for --weighting awr")
    sim_task: str | None = flag(
        None, "simulated task eval-policy runs; unset: from the task text", choices=SIM_TASKS
    )
    units: str | None = flag(  # recorded in the checkpoint
        None, UNITS_HELP.format("the dataset's"), choices=BODY_UNITS
    )
    # a Sequence, not a list: the flag is one comma-separated text (`parse_episodes`)
    holdout_episodes: Sequence[int] | None = flag(
        None,
        "held-out episodes, e.g. 3,17,40 (instead of --holdout)",
        type=parse_episodes,
    )
    learner: PolicyLearnerConfig = section(PolicyLearnerConfig, "conditioning and weighting")
    sampling: PolicySamplingConfig = section(PolicySamplingConfig, "sampling")
    network: PolicyNetworkConfig = section(PolicyNetworkConfig, "model")
    run: PolicyRunConfig = section(PolicyRunConfig, "run")

    def __post_init__(self) -> None:
        if self.holdout_episodes is not None:
            self.holdout_episodes = episode_list(self.holdout_episodes)

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        weighting = self.learner.weighting
        arm = "bc" if self.learner.conditioning == "none" else "awbc"
        if self.sampling.drop_negative:
            arm = "filtered-bc"
        return f"policy-{arm}" + (f"-{weighting}" if weighting != "none" else "")

    @property
    def recipe(self) -> dict:
        """What a run trains (must be the same to resume): everything but budget and infra."""
        learner = {k: v for k, v in vars(self.learner).items() if k != "fps"}
        run = self.run
        return {
            "data_dir": self.data_dir,
            "advantage_column": self.advantage_column,
            **learner,
            **vars(self.sampling),
            "batch_size": run.batch_size,
            "lr": run.lr,
            "seed": run.seed,
        }
