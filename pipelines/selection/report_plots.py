"""The propensity report's plots: rejection rates by selector mode and by responder, and the
propensity histogram of the critical attempts (matplotlib, imported only when plotting)."""

from __future__ import annotations

import io

import numpy as np

PLOTS = ("rejection_by_mode.png", "rejection_by_responder.png", "propensity_histogram.png")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def report_plots(report) -> dict[str, bytes]:
    """The three plots of a `PropensityReport`, as PNG bytes by file name (`PLOTS`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for name, table, title in (
        (PLOTS[0], report.by_mode, "rejection rate by selector mode"),
        (PLOTS[1], report.by_responder, "rejection rate by responder (selected candidate)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        keys = list(table)
        ax.bar(keys, [table[k]["rejection_rate"] for k in keys], color="tab:red")
        for i, k in enumerate(keys):
            ax.text(i, table[k]["rejection_rate"], f"n={table[k]['attempts']}", ha="center",
                    va="bottom", fontsize=8)  # fmt: skip
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("rejected / critical attempts")
        ax.set_title(title, fontsize=10)
        out[name] = _png(fig)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    h = report.histogram
    edges = np.array(h["edges"])
    ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", edgecolor="black")
    ax.axvline(report.low_propensity_approved["threshold"], color="tab:orange", ls="--",
               label="--low")  # fmt: skip
    ax.set_xlabel("action_propensity P(a | s) of critical attempts")
    ax.set_ylabel("attempts")
    ax.legend(fontsize=8)
    ax.set_title("propensity histogram", fontsize=10)
    out[PLOTS[2]] = _png(fig)
    plt.close(fig)
    return out
