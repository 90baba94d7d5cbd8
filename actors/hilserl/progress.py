"""A HIL-SERL run's numbers as it goes: each episode's log record, the running averages over
the last episodes, the driver's progress line and the metrics MLflow gets."""

from __future__ import annotations

import math

import numpy as np

from pipelines.rl.replay import Episode


def episode_record(received: Episode, **counters) -> dict:
    """The learner's log line of an episode it received; `counters`: the episode's number,
    the env and learner steps so far, the wall time."""
    info = received.info
    return {
        "episode": counters["episode"],
        "env_steps": counters["env_steps"],
        "learner_steps": counters["learner_steps"],
        "collector": info.get("collector"),
        "success": bool(info.get("success", False)),
        "length": len(received),
        "return": float(np.sum(received.reward)),
        "intervention_steps": int(np.sum(received.intervention)),
        "random": bool(info.get("random", False)),
        "cpu_s": float(info.get("cpu_s", 0.0)),
        "bytes": received.nbytes(),
        "version": info.get("version", -1),
        "wall_s": counters["wall_s"],
    }


def window_metrics(episode_log: list[dict], window: int) -> dict:
    """Success and intervention rates, return and length over the last `window` episodes, and
    the share of the policy's episodes (not random) it finished alone (no intervened step)."""
    out = {}
    last = episode_log[-window:]
    if last:
        steps = sum(r["length"] for r in last)
        out["success_rate"] = float(np.mean([r["success"] for r in last]))
        out["intervention_rate"] = sum(r["intervention_steps"] for r in last) / max(steps, 1)
        out["return"] = float(np.mean([r["return"] for r in last]))
        out["episode_length"] = steps / len(last)
    recent = [r for r in episode_log if not r["random"]][-window:]
    if recent:
        out["autonomous_success_rate"] = float(
            np.mean([r["success"] and r["intervention_steps"] == 0 for r in recent])
        )
    return out


def numeric(status: dict) -> dict:
    """The status's finite numbers (what MLflow logs)."""
    return {
        k: float(v)
        for k, v in status.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def progress_line(s: dict, steps: int, bound: float) -> str:
    parts = [f"env {s['env_steps']}/{steps}", f"{s['episodes']} episodes"]
    if "success_rate" in s:
        parts.append(f"success {s['success_rate']:.2f}")
        parts.append(f"interventions {s['intervention_rate']:.2f}")
    parts.append(f"learner {s['learner_steps']} steps ({s['updates_per_s']:.0f}/s)")
    if "q_mean" in s:
        parts.append(f"Q {s['q_mean']:.2f} (max {s['q_max']:.2f}, bound {bound:g})")
    parts.append(f"alarms {s['q_alarms']}")
    return ", ".join(parts)
