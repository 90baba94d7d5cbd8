"""HIL-SERL's agent configs: the flags a run trains with, and the agent's full config.

`AgentHyperparameters` holds the agent's flags of `flywheel hilserl` (nested in its config);
`AgentConfig` is the agent as built and checkpointed: those values and what the run resolved
(the cameras, the encoder, the image size, the Q bound, the joints' ranges). `stddev` parses
the exploration noise's schedule.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import flag

KIND = register_kind("hilserl", "flywheel hilserl")  # a HIL-SERL learner's checkpoints
ENCODER_MODES = ("drqv2", "frozen")
BC_ON = ("interventions", "interventions+demos")

_LINEAR = re.compile(r"^linear\(\s*([^,]+),\s*([^,]+),\s*([^)]+)\)$")


def stddev(schedule: str, step: int) -> float:
    """DrQ-v2's schedules: a constant, or `linear(init, final, duration)` over env steps."""
    try:
        return float(schedule)
    except ValueError:
        pass
    match = _LINEAR.match(schedule.strip())
    if not match:
        raise ValueError(f"stddev schedule {schedule!r}: a number or linear(init,final,steps)")
    init, final, duration = (float(g) for g in match.groups())
    mix = min(max(step / duration, 0.0), 1.0) if duration > 0 else 1.0
    return (1.0 - mix) * init + mix * final


@dataclass
class AgentConfig:
    """The agent as built and checkpointed (`meta["agent"]` of a `hilserl` checkpoint)."""

    cameras: list[str] = field(default_factory=list)  # image keys (drqv2) / what was encoded
    state_dim: int = 6
    action_dim: int = 4
    encoder: str = "frozen"  # drqv2 | frozen
    image_size: int = 64
    frame_stack: int = 1
    frozen_dim: int = 0  # features per frame (frozen)
    feature_dim: int = 50
    hidden_dim: int = 1024
    lr: float = 1e-4
    critic_tau: float = 0.01
    discount: float = 0.99
    nstep: int = 3
    stddev_schedule: str = "linear(0.2,0.05,5000)"
    stddev_clip: float = 0.3
    bc_weight: float = 0.5
    bc_on: str = "interventions"
    utd_ratio: int = 1
    shift_pad: int = 4
    clip_target_q: bool = False
    q_bound: float = 1.0
    state_low: list[float] = field(default_factory=list)  # joint ranges, for normalization
    state_high: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.encoder not in ENCODER_MODES:
            raise ValueError(f"encoder {self.encoder!r}: one of {ENCODER_MODES}")
        if self.bc_on not in BC_ON:
            raise ValueError(f"bc_on {self.bc_on!r}: one of {BC_ON}")
        if self.encoder == "frozen" and self.frozen_dim < 1:
            raise ValueError("a frozen encoder needs frozen_dim (its features per frame)")
        if self.encoder == "drqv2" and not self.cameras:
            raise ValueError("the drqv2 encoder needs cameras")
        stddev(self.stddev_schedule, 0)  # parses

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AgentHyperparameters:
    """The agent's flags: its sizes, optimizer, exploration and BC term."""

    frame_stack: int = flag(1, "frames the agent sees at once")
    hidden_dim: int | None = flag(None, "MLP width; unset: 1024 on a GPU, 256 on CPUs")
    feature_dim: int = flag(50, "the trunks' feature size")
    lr: float = flag(1e-4, "Adam's learning rate")
    bc_weight: float = flag(0.5, "the BC term's weight")
    bc_on: str = flag("interventions", "interventions|interventions+demos")
    utd_ratio: int = flag(1, "critic updates per actor update")
    stddev_schedule: str = flag(
        "linear(0.2,0.05,5000)", "exploration noise: a number or linear(init,final,steps)"
    )
    clip_target_q: bool = flag(False, "clip the critic's target to the Q bound")

    def agent_config(self, hidden_dim: int, **resolved) -> AgentConfig:
        """The agent with these hyperparameters, `hidden_dim` resolved, and what the run
        resolved (`cameras`, `encoder`, `image_size`, `frozen_dim`, `q_bound`, ...)."""
        return AgentConfig(**{**asdict(self), "hidden_dim": hidden_dim, **resolved})
