"""`SynthConfig`: the options of a synthesized dataset, their checks, and the controller mix;
`DatasetLayout`: what the dataset writer reads of a job's config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipelines.classifier.labels import success_csv_path
from pipelines.dataset import V21, V30, DatasetError, check_frame_size, resolve_video_codec
from pipelines.runtime.flags import FlagConfig, flag
from pipelines.simulator.controllers import CONTROLLERS
from pipelines.simulator.tasks import DEFAULT_TASK, TASKS

DEFAULT_MIX = "expert=0.4,hesitant=0.3,noisy=0.2,failing=0.1"


class DatasetLayout(Protocol):
    """What the writer reads of a job's config (`SynthConfig`, `CollectConfig`)."""

    format: str
    fps: int
    image_size: int
    vcodec: str | None

    @property
    def text(self) -> str: ...


@dataclass
class SynthConfig(FlagConfig):
    out: str = flag(help="new dataset folder (must not exist, or be empty)", positional=True)
    episodes: int = flag(help="episodes to roll out")
    seed: int = flag(0, "the same seed gives the same dataset")
    task: str = flag(
        DEFAULT_TASK,
        "the simulated task, reach_grasp or pick_lift; any other text is the task text of a "
        "reach_grasp dataset",
    )
    task_text: str | None = flag(None, "the dataset's task text (default: the task's own)")
    mix: str = flag(DEFAULT_MIX, "controller shares")
    operator: float = flag(0.5, "share of noisy/failing episodes supervised by the operator")
    fps: int = flag(10, "control steps (and frames) per second")
    image_size: int = flag(128, "camera images, square, in px")
    steps_after_success: int = flag(
        0,
        "keep recording N frames after the success and write <OUT>_success_frames.csv (the "
        "reward classifier's labels)",
        metavar="N",
    )
    vcodec: str | None = flag(
        None,  # None: av1 where PyAV has SVT-AV1, else h264
        "video codec: av1 (the default where PyAV has SVT-AV1, as LeRobot's), h264 or mpeg4",
    )
    format: str = flag(
        V30,
        f"LeRobot layout: {V30} (as LeRobot >= 0.4 records: episodes packed into files chunked "
        f"by size) or {V21} (one file per episode, as openpi, kai0 and GR00T read)",
    )
    ray_address: str | None = flag(None, "the Ray cluster (default: local)")

    @property
    def text(self) -> str:
        return self.task_text or TASKS[self.task].text

    def validate(self) -> dict[str, float]:
        """Check the options (and resolve `task`); returns the parsed mix.

        `task` names the simulated task (`reach_grasp`, `pick_lift`, or the spelled-out
        "reach-and-grasp", "pick_and_lift", ...); anything else is taken as the dataset's task
        text for a reach-and-grasp dataset.
        """
        if self.episodes < 1:
            raise DatasetError(f"--episodes {self.episodes}: at least 1")
        name = self.task.strip().lower().replace("-", "_").replace("_and_", "_")
        if name in TASKS:
            self.task = name
        elif self.task.strip() and self.task_text is None:
            self.task, self.task_text = DEFAULT_TASK, self.task.strip()
        else:
            raise DatasetError(f"--task {self.task!r}: one of {sorted(TASKS)} or a task text")
        if self.task_text is not None and not self.task_text.strip():
            raise DatasetError("--task-text: empty")
        check_frame_rate_and_size(self.fps, self.image_size)
        try:
            self.vcodec = resolve_video_codec(self.vcodec)
        except DatasetError as e:
            raise DatasetError(f"--vcodec: {e}") from None
        try:
            check_frame_size(self.vcodec, self.image_size, self.image_size)
        except DatasetError as e:
            raise DatasetError(f"--image-size {self.image_size}: {e}") from None
        if not 0 <= self.operator <= 1:
            raise DatasetError(f"--operator {self.operator}: a share between 0 and 1")
        if not 0 <= self.steps_after_success <= 1000:
            raise DatasetError(
                f"--steps-after-success {self.steps_after_success}: between 0 and 1000"
            )
        if self.format not in (V21, V30):
            raise DatasetError(f"--format {self.format!r}: {V21} or {V30}")
        out = Path(self.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DatasetError(f"{out}: exists and is not an empty folder (nothing was written)")
        csv_path = success_csv_path(out)
        if self.steps_after_success and csv_path.exists():
            raise DatasetError(f"{csv_path}: exists (nothing was written)")
        return parse_mix(self.mix)


def check_frame_rate_and_size(fps: int, image_size: int) -> None:
    """One-line DatasetErrors for `--fps` and `--image-size` out of their ranges."""
    if not 1 <= fps <= 120:
        raise DatasetError(f"--fps {fps}: between 1 and 120")
    if not 16 <= image_size <= 1024:
        raise DatasetError(f"--image-size {image_size}: between 16 and 1024")


def parse_mix(text: str) -> dict[str, float]:
    """'expert=0.4,hesitant=0.3' -> {'expert': 0.4, 'hesitant': 0.3}, weights normalised."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in CONTROLLERS:
            raise DatasetError(
                f"--mix {text!r}: {part.strip()!r} is not <controller>=<weight> with a "
                f"controller in {sorted(CONTROLLERS)}"
            )
        try:
            w = float(weight)
        except ValueError:
            raise DatasetError(f"--mix {text!r}: weight {weight!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise DatasetError(f"--mix {text!r}: weight of {name} must be >= 0")
        mix[name] = mix.get(name, 0.0) + w
    total = sum(mix.values())
    if total <= 0:
        raise DatasetError(f"--mix {text!r}: the weights add up to 0")
    return {k: v / total for k, v in mix.items()}
