"""The policy family's configs (`flywheel train-policy`) and its checkpoint kind.

`PolicyTrainConfig` nests four sections, each handed down whole to what uses it: `learner`
(the loss: conditioning, weighting, augmentation; `PolicyLearner` takes it), `sampling` (which
frames a batch draws), `network` (the model's shape and input) and `run` (workers, budget,
checkpoints). `recipe` is what a run trains: a rerun under the same name must keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.policy.data import DEFAULT_DATA_TYPE_WEIGHTS
from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig
from pipelines.runtime.run_config import RunConfig
from pipelines.simulator.tasks import TASK_NAMES

KIND = register_kind("policy", "flywheel train-policy")
CONDITIONINGS = ("prompt", "none")
SIM_TASKS = TASK_NAMES
CURRICULA = ("none", "propensity")


@dataclass
class PolicyLearnerConfig:
    """The loss of one training step (`pipelines.policy.learner`)."""

    conditioning: str = "prompt"  # prompt | none
    indicator_dropout: float = 0.3
    weighting: str = "none"  # none | awr | iql
    temperature: float = 0.5
    max_weight: float = 20.0
    expectile: float = 0.7
    discount: float = 0.99
    target_tau: float = 0.005
    fps: float = 10.0  # the dataset's (set by the driver)
    augment: bool = True
    importance_weights: bool = False  # seed 000: pi(a_sel | s, candidates) / propensity
    max_importance_weight: float = 10.0
    self_normalize: bool = False
    candidate_scale: float = 5.0  # action units of pi's softmax over the candidates


@dataclass
class PolicySamplingConfig:
    """Which frames a batch draws."""

    drop_negative: bool = False  # only top-label frames (filtered BC)
    data_type_weights: str = DEFAULT_DATA_TYPE_WEIGHTS
    balance_data_types: bool = False
    curriculum: str = "none"  # none | propensity
    curriculum_min_propensity: float = 0.5
    curriculum_fraction: float = 0.5


@dataclass
class PolicyNetworkConfig:
    """The network's shape and input (the rest of `PolicyConfig` comes from the dataset)."""

    image_size: int = 64
    encoder: str = "spatial_softmax"
    chunk_size: int = 10
    n_action_steps: int = 5  # actions executed per prediction at evaluation
    action_frame: str = "relative"


@dataclass
class PolicyRunConfig(RunConfig):
    """train-policy's run section (its defaults)."""

    steps: int = 3000  # with the defaults: ~11 CPU-minutes (2 workers, 2 cores)
    batch_size: int = 32  # frames per worker per step
    checkpoint_every: int = 500
    holdout: float = 0.05


@dataclass
class PolicyTrainConfig(FlagConfig):
    dataset: str
    data_dir: str = "data"
    advantage_column: str = "absolute_advantage"  # the A of --weighting awr
    sim_task: str | None = None  # default: from the dataset's task text
    holdout_episodes: list[int] | None = None  # default: a `run.holdout` share
    learner: PolicyLearnerConfig = field(default_factory=PolicyLearnerConfig)
    sampling: PolicySamplingConfig = field(default_factory=PolicySamplingConfig)
    network: PolicyNetworkConfig = field(default_factory=PolicyNetworkConfig)
    run: PolicyRunConfig = field(default_factory=PolicyRunConfig)

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
