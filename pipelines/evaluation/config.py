"""An evaluation's options: `EvalConfig`, each arm's `ArmOptions`, the simulator's settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import FlagConfig, flag
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

    prompt: str | None = None  # default: the one the checkpoint was trained to run with
    cfg_scale: float = 1.0
    n_action_steps: int | None = None  # default: the checkpoint's
    name: str | None = None
    calibration: dict | None = None  # the arm's, converting a policy in other units (--calibration)


@dataclass
class EvalConfig(FlagConfig):
    checkpoint: str = flag(help="a checkpoint folder or controller:<name>", positional=True)
    episodes: int = flag(100, "episodes per arm")
    seed: int = flag(0, "seeds --seed .. --seed + episodes - 1")
    prompt: str | None = flag(
        None,
        "positive, negative, none (the bare task) or a task text of the policy; unset: the "
        "prompt the checkpoint was trained with (the bare task for plain BC, positive for AWBC)",
    )
    cfg_scale: float = flag(1.0, "classifier-free guidance beta (1: the prompt alone)")
    n_action_steps: int | None = flag(
        None, "actions executed per prediction (default: the checkpoint's)"
    )
    compare: list[str] = flag(
        default_factory=list,
        help="another arm, SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X] (repeatable)",
        metavar="ARM",
        append=True,
    )
    calibration: str | None = flag(
        None,
        "the calibration of the arm a policy's data was recorded with, to run a policy trained "
        "in LeRobot's range_m100_100 in the simulator's degrees: a JSON file (LeRobot's schema) "
        "or a follower id in LeRobot's calibration folders",
        metavar="FILE|ID",
    )
    report: str | None = flag(None, "write the report as JSON here")
    videos: int = flag(2, "episodes per arm filmed for MLflow")
    one_process: bool = flag(False, "run without Ray, in this process")
    groups_per_cpu: int = 2
    name: str | None = flag(None, "the first arm's name (and the MLflow run's)")
    ray_address: str | None = flag(None, "the Ray cluster (default: local)")
    mlflow: bool = flag(True, "do not log an MLflow run")


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
