"""An evaluation's options: `EvalConfig`, each arm's `ArmOptions`, the simulator's settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipelines.dataset import DatasetError
from pipelines.simulator.env import SO101Env
from pipelines.simulator.tasks import DEFAULT_TASK

CONTROLLER_PREFIX = "controller:"
PROMPT_CHOICES = ("positive", "negative", "none")


@dataclass(frozen=True)
class EnvSettings:
    """The simulator an evaluation runs in (from the checkpoints' configs)."""

    task: str = DEFAULT_TASK
    image_size: int = 128
    fps: int = 10
    action_mode: str = "joint"

    def make(self) -> SO101Env:
        return SO101Env(
            self.task, fps=self.fps, image_size=self.image_size, action_mode=self.action_mode
        )


@dataclass
class ArmOptions:
    """What the user asked of one arm besides its source."""

    prompt: str = "positive"
    cfg_scale: float = 1.0
    n_action_steps: int | None = None  # default: the checkpoint's
    name: str | None = None


@dataclass
class EvalConfig:
    checkpoint: str
    episodes: int = 100
    seed: int = 0
    prompt: str = "positive"
    cfg_scale: float = 1.0
    n_action_steps: int | None = None
    compare: list[str] = field(default_factory=list)
    report: str | None = None
    videos: int = 2
    one_process: bool = False
    groups_per_cpu: int = 2
    ray_address: str | None = None
    mlflow: bool = True
    name: str | None = None


def parse_arm(spec: str) -> tuple[str, ArmOptions]:
    """'SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X]' -> (source, options)."""
    source, *parts = spec.split("#")
    options = ArmOptions()
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError
            if key == "prompt":
                options.prompt = value
            elif key == "cfg":
                options.cfg_scale = float(value)
            elif key == "steps":
                options.n_action_steps = int(value)
            elif key == "name":
                options.name = value
            else:
                raise ValueError
        except ValueError:
            raise DatasetError(
                f"--compare {spec!r}: {part!r} is not prompt=P, cfg=B, steps=N or name=X"
            ) from None
    check_cfg_scale(options.cfg_scale, spec)
    return source, options


def check_cfg_scale(value: float, where: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise DatasetError(f"{where}: cfg scale {value} must be a positive number")
