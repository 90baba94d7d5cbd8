"""One labeled episode as a picture: a strip of frames per camera over its value curve.

`load_episode_view(dataset, episode, data_dir, frames)` reads what the picture shows: a few
evenly spaced frames of every camera (decoded as a stream, stopping after the last one shown),
the episode's value curve (`absolute_value` where an estimate's `data_<VARIANT>_<step>/` folder
has it, else `progress`, else `stage_progress_gt`) and each frame's advantage label, read from
the task text its `task_index` names ("<task>, Advantage: positive|negative", or n_slices'
"<task>, Advantage: i"). `render_episode_view(view)` draws it with matplotlib (Agg, no display)
and returns the PNG's bytes: frames in rows, one per camera; below them the curve, with the
positive frames shaded green and the negative ones red under it, and the shown frames marked.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.dataset.tables import column_to_numpy, parquet_column_names
from pipelines.runtime.flags import FlagConfig, flag

# the value curves a dataset may carry, the first one present is drawn
CURVES = ("absolute_value", "progress", "stage_progress_gt")
_LABEL = re.compile(r", Advantage: (positive|negative|-?\d+)$")


@dataclass
class ViewConfig(FlagConfig):
    dataset: str = flag(help="a LeRobot v2.1 or v3.0 dataset folder", positional=True)
    out: str = flag(help="the PNG file to write (its folder must exist)", metavar="PNG")
    episode: int = flag(0, "the episode to show (its episode_index)")
    data_dir: str = flag(
        "data",
        "episode files to read: data, or an estimate's data_<VARIANT>_<step> "
        "(its absolute_value is the curve, its task_index the labels)",
    )
    frames: int = flag(8, "frames shown per camera, evenly spaced over the episode")


@dataclass
class EpisodeView:
    """What the picture of one episode shows."""

    title: str
    frame_indices: np.ndarray  # the frames shown, (k,)
    images: dict[str, list[np.ndarray]]  # camera key -> k RGB frames
    length: int
    curve_name: str | None = None
    curve: np.ndarray | None = None  # (length,)
    # per frame: 1 positive, 0 negative, -1 unlabeled; None: the episode has no labels
    labels: np.ndarray | None = None
    label_names: dict[int, str] = field(default_factory=dict)


def frame_label(task: str) -> str | None:
    """'positive', 'negative' or a slice number, from a labeled task text; None otherwise."""
    found = _LABEL.search(task)
    return found.group(1) if found else None


def _labels(dataset: LeRobotDataset, task_index: np.ndarray) -> np.ndarray | None:
    names = {i: frame_label(text) for i, text in dataset.tasks.items()}
    if not any(names.values()):
        return None
    slices = [int(n) for n in names.values() if n not in (None, "positive", "negative")]
    top = max(slices, default=1)
    out = np.full(len(task_index), -1.0)
    for row, index in enumerate(task_index):
        name = names.get(int(index))
        if name == "positive":
            out[row] = 1.0
        elif name == "negative":
            out[row] = 0.0
        elif name is not None:  # n_slices: 0 .. N-1, drawn as a share of the top slice
            out[row] = int(name) / max(top, 1)
    return out


def load_episode_view(
    dataset: LeRobotDataset, episode: int, data_dir: str = "data", frames: int = 8
) -> EpisodeView:
    """The frames, curve and labels of `episode` (module docstring); DatasetError naming the
    dataset, folder or episode when they are not there."""
    if frames < 1:
        raise DatasetError(f"--frames {frames}: at least 1")
    if episode not in dataset.episode_indices:
        listed = dataset.episode_indices
        span = f"{listed[0]}-{listed[-1]}" if listed else "none"
        raise DatasetError(f"{dataset.root}: no episode {episode} (episodes: {span})")
    path = dataset.data_file(episode, data_dir)
    if not path.exists():
        raise DatasetError(f"{dataset.relative(path)}: missing (episode {episode}, {data_dir}/)")
    present = set(parquet_column_names(path))
    curve_name = next((c for c in CURVES if c in present), None)
    wanted = [c for c in (curve_name, "task_index") if c is not None and c in present]
    table = dataset.read_episode(episode, wanted or ["frame_index"], data_dir)
    length = table.num_rows
    if length == 0:
        raise DatasetError(f"{dataset.relative(path)}: episode {episode} has no frames")
    curve = None
    if curve_name is not None:
        curve = column_to_numpy(table, curve_name).astype(np.float64)
    labels = None
    if "task_index" in present:
        labels = _labels(dataset, column_to_numpy(table, "task_index").reshape(-1))
    shown = np.unique(np.linspace(0, length - 1, min(frames, length)).round().astype(int))
    images = {
        key: _frames_at(dataset, episode, key, shown, data_dir) for key in dataset.camera_keys
    }
    task = (dataset.episodes.get(episode) or {}).get("tasks") or []
    task_text = _LABEL.sub("", task[0]) if task else ""
    outcome = dataset.episode_outcome(episode)
    said = {True: ", success", False: ", failure", None: ""}[outcome]
    title = f"{dataset.root.name}, episode {episode} ({length} frames{said})"
    return EpisodeView(
        title=f"{title}: {task_text}" if task_text else title,
        frame_indices=shown,
        images=images,
        length=length,
        curve_name=curve_name,
        curve=curve,
        labels=labels,
    )


def _frames_at(
    dataset: LeRobotDataset, episode: int, key: str, shown: np.ndarray, data_dir: str
) -> list[np.ndarray]:
    wanted = set(int(i) for i in shown)
    kept = []
    for i, frame in enumerate(dataset.iter_camera_frames(episode, key, data_dir)):
        if i in wanted:
            kept.append(frame)
            if len(kept) == len(wanted):
                break
    return kept


def _curve_limits(curve: np.ndarray) -> tuple[float, float]:
    """[0, 1] for progress, [-1, 0] for a recap value, else the curve's range padded."""
    lo, hi = float(np.nanmin(curve)), float(np.nanmax(curve))
    for low, high in ((0.0, 1.0), (-1.0, 0.0), (-1.0, 1.0)):
        if low <= lo and hi <= high:
            return low, high
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def render_episode_view(view: EpisodeView, dpi: int = 100) -> bytes:
    """The picture as PNG bytes (matplotlib's Agg canvas: no display, no pyplot state)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cameras = [k for k, frames in view.images.items() if frames]
    columns = len(view.frame_indices)
    rows = len(cameras) + 1
    fig = Figure(figsize=(1.6 * max(columns, 4), 1.7 * len(cameras) + 2.6), dpi=dpi)
    grid = fig.add_gridspec(rows, columns, height_ratios=[1.0] * len(cameras) + [1.5])
    for r, key in enumerate(cameras):
        for c, frame in enumerate(view.images[key]):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(frame)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {view.frame_indices[c]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(key.removeprefix("observation.images."), fontsize=8)
    ax = fig.add_subplot(grid[rows - 1, :])
    t = np.arange(view.length)
    legend = []
    if view.curve is not None:
        low, high = _curve_limits(view.curve)
        if view.labels is not None:
            for value, colour, name in (
                (1.0, "tab:green", "positive"),
                (0.0, "tab:red", "negative"),
            ):
                mask = view.labels == value
                for start, stop in _runs(mask):  # each run shaded to its frames' edges
                    xs = np.concatenate([[start - 0.5], t[start:stop], [stop - 0.5]])
                    ys = np.concatenate(
                        [[view.curve[start]], view.curve[start:stop], [view.curve[stop - 1]]]
                    )
                    ax.fill_between(xs, low, ys, color=colour, alpha=0.35, linewidth=0)
                if mask.any():
                    legend.append(Patch(color=colour, alpha=0.35, label=f"{name} ({mask.sum()})"))
            sliced = (view.labels > 0) & (view.labels < 1)
            if sliced.any():  # n_slices labels: a green as deep as the slice
                ax.scatter(t[sliced], view.curve[sliced], c=view.labels[sliced], cmap="Greens", s=6)
        ax.plot(t, view.curve, color="black", linewidth=1.2, label=view.curve_name)
        ax.set_ylim(low, high)
        ax.set_ylabel(view.curve_name, fontsize=8)
    elif view.labels is not None:
        ax.step(t, view.labels, where="mid", color="black", linewidth=1.0)
        ax.set_ylabel("label", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no value, progress or labels in this folder", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)  # fmt: skip
    for i in view.frame_indices:
        ax.axvline(int(i), color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlim(0, max(view.length - 1, 1))
    ax.set_xlabel("frame", fontsize=8)
    ax.tick_params(labelsize=7)
    if legend:
        ax.legend(handles=legend, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2,
                  fontsize=7, frameon=False)  # fmt: skip
    fig.suptitle(view.title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
