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
    ("synthesize SO-101 episodes in the simulator", offline.synthesize),
    ("Stage 0: label from progress (binary, top 30% positive)", offline.label_from_progress),
    ("Stage 1: train the kai0 advantage estimator (Ray Train)", offline.train_the_estimator),
    (
        "Stage 2: estimate every frame (Ray Data), relabel from the estimate",
        offline.estimate_and_relabel,
    ),
    ("Stage 3: AWBC against plain BC, in the simulator on the same seeds", offline.awbc_against_bc),
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
