"""What a labeling reports: the reference's statistics block, the MLflow run and its figure."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from pipelines.dataset import LeRobotDataset
from pipelines.labeling import advantage
from pipelines.labeling.config import LabelConfig


@dataclass
class LabelResult:
    frames: int
    files: int
    cuts: dict[int, advantage.Cuts]
    task_texts: list[str]
    counts: dict[int, int]  # task_index -> frames
    group_names: dict[int, str] = field(default_factory=dict)
    group_frames: dict[int, int] = field(default_factory=dict)
    histograms: dict = field(default_factory=dict)  # group -> (counts, edges) or None
    files_rewritten: int = 0
    mlflow_run: str | None = None
    seconds: float = 0.0


def group_name(g: int, cfg: LabelConfig, bases: list[str]) -> str:
    stage = g % cfg.stage_nums
    if cfg.per_task_threshold:
        return f"task {g // cfg.stage_nums} ({bases[g // cfg.stage_nums]!r}) stage {stage}"
    return f"stage {stage}"


def report_header(cfg: LabelConfig) -> list[str]:
    out = [
        f"Processing data from: {cfg.dataset}",
        f"Discretization type: {cfg.discretion_type}",
    ]
    if cfg.discretion_type == "binary":
        out.append(f"Threshold: {cfg.threshold}% (top {cfg.threshold}% will be task_index=1)")
    else:
        out.append(f"Number of slices: {cfg.n_slices}")
    out += [f"Progress offset: {cfg.chunk_size} frames", f"Stage nums: {cfg.stage_nums}"]
    if cfg.stage_nums > 1:
        step = 1.0 / cfg.stage_nums
        out.append(
            "Stage boundaries (based on frame's stage_progress_gt): "
            f"{[step * i for i in range(cfg.stage_nums + 1)]}"
        )
    out.append("-" * 80)
    return out


def report_groups(
    cfg: LabelConfig,
    stats: dict[int, dict],
    frames: dict[int, int],
    cuts: dict[int, advantage.Cuts],
    bases: list[str],
) -> list[str]:
    """The reference's statistics block, one section per stage (per task and stage)."""
    out = []
    total = sum(frames.values())
    out.append(f"\nTotal frames processed: {total}")
    step = 1.0 / cfg.stage_nums
    if cfg.stage_nums > 1:
        out.append("\nFrames per stage:")
        for g, n in frames.items():
            s = g % cfg.stage_nums
            pct = 100.0 * n / total if total > 0 else 0
            label = (
                f"  Stage {s}" if not cfg.per_task_threshold else f"  {group_name(g, cfg, bases)}"
            )
            out.append(
                f"{label} (stage_progress_gt in [{step * s:.3f}, {step * (s + 1):.3f})): "
                f"{n} frames ({pct:.1f}%)"
            )
    for g, n in frames.items():
        s = g % cfg.stage_nums
        out.append(f"\n{'=' * 80}")
        if cfg.per_task_threshold:
            out.append(f"{group_name(g, cfg, bases).upper()} REWARD STATISTICS")
        elif cfg.stage_nums > 1:
            out.append(
                f"STAGE {s} REWARD STATISTICS (stage_progress_gt in "
                f"[{step * s:.3f}, {step * (s + 1):.3f}))"
            )
        else:
            out.append("REWARD STATISTICS")
        out.append("=" * 80)
        st = stats[g]
        out += [
            f"Frames count: {n}",
            f"Mean:   {st['mean']:.6f}",
            f"Std:    {st['std']:.6f}",
            f"Min:    {st['min']:.6f}",
            f"Max:    {st['max']:.6f}",
            "\nPercentiles:",
        ]
        out += [f"  {p:3d}%: {v:.6f}" for p, v in st["percentiles"].items()]
        b = cuts[g].values
        if n == 0:
            out.append(f"\nWarning: Stage {s} has no data!")
        elif cfg.discretion_type == "binary":
            out.append(f"\nThreshold value (top {cfg.threshold}%): {b[0]:.6f}")
        else:
            out.append(f"\n{cfg.n_slices}-Slices Boundaries (higher reward -> higher task_index):")
            for i in range(len(b)):
                if i < len(b) - 1:
                    out.append(f"  task_index={i}: reward in [{b[i]:.6f}, {b[i + 1]:.6f})")
                else:
                    out.append(f"  task_index={i}: reward >= {b[i]:.6f}")
    out.append("=" * 80)
    return out


def log_labeling(tracked, cfg: LabelConfig, ds: LeRobotDataset, result: LabelResult) -> str:
    params = {k: v for k, v in asdict(cfg).items() if k not in ("ray_address", "mlflow")}
    tracked.start(f"label {ds.root.name}", params)
    metrics = {
        "frames": result.frames,
        "files": result.files,
        "files_rewritten": result.files_rewritten,
        "wall_seconds": result.seconds,
    }
    for g, cut in result.cuts.items():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.group_names[g]).strip("_")
        metrics[f"{name}/frames"] = result.group_frames[g]
        if cfg.discretion_type == "binary":
            metrics[f"{name}/threshold"] = cut.values[0]
        else:
            for j, b in enumerate(cut.values):
                metrics[f"{name}/boundary_{j}"] = b
    for ti, c in result.counts.items():
        metrics[f"label_count/task_index_{ti}"] = c
    tracked.log_metrics(metrics)
    tracked.log_text(
        "".join(f"{i}\t{t}\t{result.counts[i]}\n" for i, t in enumerate(result.task_texts)),
        "task_index_counts.tsv",
    )
    tracked.log_figure(
        reward_histogram_figure,
        "reward_histogram.png",
        panels=[
            (
                result.group_names[g],
                result.group_frames[g],
                result.histograms[g],
                result.cuts[g].values,
            )
            for g in result.cuts
        ],
        binary=cfg.discretion_type == "binary",
        xlabel=f"reward ({cfg.advantage_source}, chunk {cfg.chunk_size})",
    )
    return tracked.finish()


def reward_histogram_figure(panels, binary: bool, xlabel: str):
    """Histogram of each group's rewards with its threshold (or slice boundaries) drawn."""
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, frames, hist, cuts) in zip(axes.flat, panels, strict=False):
        if hist is not None:
            ax.stairs(hist[0], hist[1], fill=True, alpha=0.6)
        for j, b in enumerate(cuts):
            ax.axvline(
                b,
                color="red",
                lw=1,
                label=("threshold" if binary else "slice bounds") if j == 0 else None,
            )
        ax.set_title(f"{name}: {frames} frames", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frames")
        if hist is not None:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Rewards per group, with the labeling cuts")
    return fig
