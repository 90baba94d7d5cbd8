"""A HIL-SERL run's report: the learning curves (a PNG in the run folder and in MLflow) and
the history they are drawn from (`history.json`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actors.hilserl.config import HilserlConfig
from pipelines.dataset import atomic_write_json, replace_durably, temp_path_for


def curves_figure(episodes: list[dict], metrics: list[dict], bound: float, title: str):
    """Learning curves: success and intervention rates, return, Q against its bound, losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    steps = np.array([e["env_steps"] for e in episodes])

    def running(values, window=20):
        values = np.asarray(values, dtype=float)
        out = np.empty_like(values)
        for i in range(len(values)):
            out[i] = values[max(0, i - window + 1) : i + 1].mean()
        return out

    ax = axes[0, 0]
    if len(episodes):
        lengths = np.array([e["length"] for e in episodes], dtype=float)
        interv = np.array([e["intervention_steps"] for e in episodes], dtype=float)
        ax.plot(steps, running([e["success"] for e in episodes]), label="success (with operator)")
        rate = [
            interv[max(0, i - 19) : i + 1].sum() / max(lengths[max(0, i - 19) : i + 1].sum(), 1)
            for i in range(len(episodes))
        ]
        ax.plot(steps, rate, label="intervention rate")
        alone = [e["success"] and e["intervention_steps"] == 0 for e in episodes]
        ax.plot(steps, running(alone), label="finished by the policy alone")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("env steps")
    ax.set_title("20-episode running averages", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    if len(episodes):
        ax.plot(steps, running([e["length"] for e in episodes]))
    ax.set_xlabel("env steps")
    ax.set_title("episode length (running average)", fontsize=9)
    m_steps = np.array([m.get("env_steps", 0) for m in metrics])
    ax = axes[1, 0]
    for key in ("q_mean", "q_max", "target_q_max"):
        vals = [m.get(key, np.nan) for m in metrics]
        ax.plot(m_steps, vals, label=key)
    ax.axhline(bound, color="red", lw=1, ls="--", label=f"bound {bound:g}")
    ax.set_xlabel("env steps")
    ax.set_title("Q against its bound", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for key in ("critic_loss", "bc_loss", "actor_q_loss"):
        vals = [m.get(key, np.nan) for m in metrics]
        ax.plot(m_steps, vals, label=key)
    ax.set_xlabel("env steps")
    ax.set_title("losses", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_figures(
    cfg: HilserlConfig, run_dir: Path, history: dict, bound: float, tracked
) -> list[str]:
    """The learning curves (`learning_curves.png`, and in MLflow) and `history.json`."""
    fig = curves_figure(history["episodes"], history["metrics"], bound, cfg.run_name)
    path = run_dir / "learning_curves.png"
    tmp = temp_path_for(path)
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    replace_durably(tmp, path)
    if tracked is not None:
        tracked.log_figure(
            curves_figure,
            "learning_curves.png",
            episodes=history["episodes"],
            metrics=history["metrics"],
            bound=bound,
            title=cfg.run_name,
        )
    atomic_write_json(run_dir / "history.json", history)
    return [str(path)]
