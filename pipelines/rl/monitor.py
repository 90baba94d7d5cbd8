"""The Q-overestimation monitor: Q statistics against the reward setup's theoretical bound.

With rewards in [0, r_max]:

* an episode that ends on its (only) reward (0/1 reward, `terminate_on_success`): the return
  from any state is gamma^k r_max for a success k steps later, so Q <= r_max (seed 001: the
  actor loss of -1.08 meant Q > 1, impossible with reward 1 at success and gamma 0.99);
* rewards that do not end the episode (a classifier scoring every frame): Q <= r_max / (1 - gamma).

Every learner update hands its statistics (mean and max of Q(s, a) over the batch, max of the
TD target) to `QBoundMonitor.observe`; an update *exceeds* the bound when any of them is above
bound + `tolerance` (relative, for float noise). `patience` consecutive exceeding updates raise
an alarm: one warning line, and the alarm count goes up; the next alarm needs the streak to end
first. `--clip-target-q` (the agent's `clip_target_q`) clips the TD targets to the bound.
"""

from __future__ import annotations

from dataclasses import dataclass


def q_bound(r_max: float, gamma: float, terminates: bool) -> float:
    """The largest Q a 0..r_max reward setup allows (module docstring)."""
    return float(r_max) if terminates else float(r_max) / (1.0 - float(gamma))


@dataclass
class QBoundMonitor:
    bound: float
    patience: int = 100
    tolerance: float = 0.01

    def __post_init__(self):
        self.streak = 0
        self.alarms = 0
        self.exceeded_updates = 0
        self.updates = 0
        self.worst = float("-inf")

    def observe(self, stats: dict) -> str | None:
        """One update's `q_mean`, `q_max`, `target_q_max`; a warning line when an alarm starts."""
        self.updates += 1
        top = max(float(stats["q_mean"]), float(stats["q_max"]), float(stats["target_q_max"]))
        self.worst = max(self.worst, top)
        if top <= self.bound * (1.0 + self.tolerance) + 1e-9:
            self.streak = 0
            return None
        self.exceeded_updates += 1
        self.streak += 1
        if self.streak != self.patience:
            return None
        self.alarms += 1
        return (
            f"warning: Q above its bound {self.bound:g} for {self.patience} consecutive updates "
            f"(update {self.updates}: Q mean {stats['q_mean']:.3f}, max {stats['q_max']:.3f}, "
            f"TD target max {stats['target_q_max']:.3f}); alarm {self.alarms}"
        )

    def metrics(self) -> dict:
        return {
            "q_bound": self.bound,
            "q_alarms": self.alarms,
            "q_exceeded_updates": self.exceeded_updates,
            "q_above_bound": float(self.streak > 0),
        }

    def state(self) -> dict:
        return {
            "streak": self.streak,
            "alarms": self.alarms,
            "exceeded_updates": self.exceeded_updates,
            "updates": self.updates,
            "worst": self.worst,
        }

    def load(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
