"""`flywheel view DATASET --episode N --out PNG`: one labeled episode as a picture.

A strip of evenly spaced frames per camera (`--frames`) over the episode's value curve, with the
frames labeled positive shaded green and the negative ones red under it. The curve is
`absolute_value` when `--data-dir` is an estimate's `data_<VARIANT>_<step>/` (after `flywheel
estimate`, labeled there by `flywheel label --data-dir ...`), else `progress` or
`stage_progress_gt` where the dataset has them; the labels are the advantage labels each frame's
`task_index` names. Reads only: the dataset is not changed. The PNG is written atomically. The
design is in `pipelines.vision.episode_view`. For example: `flywheel view ~/data/pick --episode
3 --data-dir data_RECAP_2000 --out episode3.png`.

Also `python -m pipelines.view`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.dataset import DatasetError, LeRobotDataset, atomic_write_bytes
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.vision.episode_view import ViewConfig, load_episode_view, render_episode_view

__all__ = ["ViewConfig", "ViewResult", "build_parser", "main", "run"]


@dataclass
class ViewResult:
    out: Path
    frames: int  # the episode's length
    cameras: list[str]
    curve: str | None
    positive: int | None  # frames labeled positive (None: no labels)
    negative: int | None


def _check_out(out: str) -> Path:
    path = Path(out).expanduser()
    if path.suffix.lower() != ".png":
        raise DatasetError(f"--out {out}: must be a .png file")
    if not path.parent.is_dir():
        raise DatasetError(f"--out {out}: folder {path.parent} does not exist")
    if path.is_dir():
        raise DatasetError(f"--out {out}: is a folder")
    return path


def run(cfg: ViewConfig) -> ViewResult:
    """Read the episode, draw it, write the PNG; DatasetError for the user's mistakes."""
    out = _check_out(cfg.out)
    dataset = LeRobotDataset(cfg.dataset)
    view = load_episode_view(dataset, cfg.episode, cfg.data_dir, cfg.frames)
    atomic_write_bytes(out, render_episode_view(view))
    labels = view.labels
    return ViewResult(
        out=out,
        frames=view.length,
        cameras=[k for k, frames in view.images.items() if frames],
        curve=view.curve_name,
        positive=None if labels is None else int((labels == 1.0).sum()),
        negative=None if labels is None else int((labels == 0.0).sum()),
    )


def report(cfg: ViewConfig, result: ViewResult) -> list[str]:
    labels = (
        "no advantage labels"
        if result.positive is None
        else f"{result.positive} positive, {result.negative} negative"
    )
    cameras = ", ".join(result.cameras) or "no cameras"
    curve = result.curve or "no value curve"
    return [
        f"episode {cfg.episode}: {result.frames} frames, {cameras}; {curve}; {labels}",
        f"Results: {result.out}",
    ]


JOB = Job("view", __doc__, ViewConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.view"))
