"""Held-out quality of a classifier: metrics at a threshold, choosing the threshold, figures.

Pure numpy (matplotlib only for the figure). The threshold is chosen on validation episodes,
never on the frames it is then measured on:

* best F1 (default): the threshold that maximizes F1 on the validation frames;
* `min_precision=P`: the lowest threshold whose precision is at least P (the most recall that
  precision allows; a reward that fires on failures teaches the policy the failure), or, if
  no threshold reaches P, the one with the highest precision (said in the rule).

Thresholds are taken halfway between consecutive distinct probabilities, so a frame never
sits exactly on the threshold.
"""

from __future__ import annotations

import numpy as np


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """accuracy, precision, recall, f1 and the confusion counts at `threshold` (p >= t)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels).astype(bool)
    pred = probs >= threshold
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    n = max(tp + fp + fn + tn, 1)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "frames": tp + fp + fn + tn,
    }


def pr_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall) at every cut between distinct probabilities."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels).astype(bool)
    values = np.unique(probs)
    cuts = np.r_[values[0] / 2, (values[:-1] + values[1:]) / 2, (values[-1] + 1) / 2]
    order = np.argsort(-probs, kind="stable")
    sorted_probs, sorted_labels = probs[order], labels[order]
    tps = np.cumsum(sorted_labels)
    fps = np.cumsum(~sorted_labels)
    # frames at or above each cut: the count of sorted probabilities >= cut
    above = np.searchsorted(-sorted_probs, -cuts, side="right")
    tp = np.where(above > 0, tps[np.maximum(above - 1, 0)], 0)
    fp = np.where(above > 0, fps[np.maximum(above - 1, 0)], 0)
    positives = labels.sum()
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / positives if positives else np.ones(len(cuts))
    return cuts, precision, recall


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, min_precision: float | None = None
) -> tuple[float, str]:
    """(threshold, the rule that chose it) from validation frames (module docstring)."""
    labels = np.asarray(labels).astype(bool)
    if len(labels) == 0:
        return 0.5, "default 0.5 (no validation frames)"
    if labels.all() or not labels.any():
        return 0.5, "default 0.5 (the validation frames hold one class only)"
    cuts, precision, recall = pr_curve(probs, labels)
    if min_precision is None:
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
        i = int(np.argmax(f1))  # ties: the lowest such threshold
        return float(cuts[i]), f"best F1 on validation ({f1[i]:.4f})"
    ok = np.flatnonzero(precision >= min_precision)
    ok = ok[recall[ok] > 0] if (recall[ok] > 0).any() else ok
    if len(ok):
        i = int(ok[0])
        return (
            float(cuts[i]),
            f"precision >= {min_precision:g} on validation (precision {precision[i]:.4f}, "
            f"recall {recall[i]:.4f})",
        )
    i = int(np.argmax(precision))
    return float(cuts[i]), (
        f"highest precision on validation ({precision[i]:.4f}; {min_precision:g} was not reached)"
    )


def confusion_table(m: dict) -> str:
    """The confusion counts as a small TSV table (logged to MLflow)."""
    return (
        "\tpredicted success\tpredicted failure\n"
        f"success\t{m['tp']}\t{m['fn']}\n"
        f"failure\t{m['fp']}\t{m['tn']}\n"
    )


def pr_figure(probs: np.ndarray, labels: np.ndarray, threshold: float, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, precision, recall = pr_curve(probs, labels)
    at = binary_metrics(probs, labels, threshold)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(recall, precision, lw=1.5)
    ax.scatter([at["recall"]], [at["precision"]], color="red", zorder=3, label=f"t={threshold:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.set_title(title, fontsize=9)
    return fig
