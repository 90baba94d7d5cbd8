"""The demo's eight steps in order, `run(config)`, and its summary table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.demo_steps import offline, online
from pipelines.demo_steps.config import STEP_COUNT, DemoConfig
from pipelines.demo_steps.state import Demo, DemoError
from pipelines.runtime.tracking import check_tracking_uri

STEPS: list[tuple[str, Callable[[Demo], str]]] = [
    ("simulate SO-101 episodes of mixed quality, some failed", offline.synthesize),
    ("record which episodes succeeded (flywheel outcomes)", offline.record_outcomes),
    (
        "learn a value from the outcomes alone: RECAP's steps-to-success (Ray Train)",
        offline.train_the_value,
    ),
    (
        "score every frame (Ray Data), label each task's best 30% positive, check the labels",
        offline.estimate_and_label,
    ),
    (
        "AWBC on those labels against plain BC, in the simulator on the same seeds",
        offline.awbc_against_bc,
    ),
    (
        "the reward classifier: train (Ray Train), serve (Ray Serve), score",
        online.reward_classifier,
    ),
    ("HIL-SERL with the served reward and the operator", online.hilserl_with_served_reward),
    ("a 3-trial Ray Tune sweep over the reward threshold", online.threshold_sweep),
]
assert len(STEPS) == STEP_COUNT


@dataclass
class DemoResult:
    out: Path
    rows: list[tuple[int, str, str, float]] = field(default_factory=list)
    mlflow_uri: str | None = None


def run(config: DemoConfig) -> DemoResult:
    """The whole demo (or `config.stage` alone, on the earlier steps' outputs); DemoError,
    DatasetError, ClusterError or TrackingError for what the user must fix."""
    problems = config.problems()
    if problems:
        raise DemoError(problems[0])
    demo = Demo(Path(config.out).resolve(), config, titles=[title for title, _ in STEPS])
    result = DemoResult(demo.out)
    result.mlflow_uri = check_tracking_uri() if config.mlflow else None
    if config.stage is None:
        demo.start_over()
    else:
        demo.load()
    chosen = range(1, len(STEPS) + 1) if config.stage is None else [config.stage]
    for step in chosen:
        title, run_step = STEPS[step - 1]
        print(f"[{step}/{len(STEPS)}] {title}", flush=True)
        t = time.time()
        outcome = run_step(demo)
        result.rows.append((step, title, outcome, time.time() - t))
    return result


def summary_table(rows: list[tuple[int, str, str, float]]) -> str:
    """One row per step that ran: what it did, its result, its wall time."""
    lines = ["| step | what | result | time |", "|---|---|---|---|"]
    lines += [f"| {n} | {title} | {result} | {s:.0f} s |" for n, title, result, s in rows]
    lines.append(f"| | total | | {sum(r[3] for r in rows):.0f} s |")
    return "\n".join(lines)
