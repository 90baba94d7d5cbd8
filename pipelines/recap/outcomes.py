"""`flywheel outcomes`: each episode's success flag, `episode_success`, written in place.

`run` reads the outcomes from the source (`pipelines.recap.sources`: a CSV, the rewards, the
reward classifier over the frames, or a few episodes by hand), checks all of them, and
only then, under the dataset's writer lock, stages the episodes metadata with the flags
(`pipelines.dataset.stage_episode_outcomes`) and commits it as one unit. Episodes the source
does not name keep the outcome they had. A mistake is one DatasetError and nothing is written.

`dataset_targets` gives the value targets (`pipelines.recap.targets`) of a dataset's episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import (
    DatasetError,
    LeRobotDataset,
    commit_staged,
    exclusive_writer,
    stage_episode_outcomes,
)
from pipelines.labeling.advantage import base_task
from pipelines.recap.config import OutcomesConfig
from pipelines.recap.sources import FrameScorer, parse_source, read_outcomes
from pipelines.recap.targets import MissingOutcomeError, value_targets

KEPT = "kept from before"
NONE = "no outcome"


@dataclass
class OutcomesResult:
    dataset: str
    source: str
    outcomes: dict[int, bool | None]  # every episode's outcome after the run
    set_now: dict[int, bool]  # those the source gave
    per_task: dict[str, list[int]] = field(default_factory=dict)  # task -> [success, failure]
    per_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [s, f]
    written: bool = False

    @property
    def uniform(self) -> bool | None:
        """The one outcome every episode has, when they all have the same (else None)."""
        values = set(self.outcomes.values())
        return values.pop() if len(values) == 1 and None not in values else None


def episode_task(ds: LeRobotDataset, ep: int) -> str:
    """The episode's task text (its first, as LeRobot lists them; without the ', Advantage:
    ...' suffix a labeling added, so that labels never change it), '' when it lists none."""
    tasks = (ds.episodes.get(ep) or {}).get("tasks") or []
    return base_task(tasks[0]) if tasks else ""


def run(cfg: OutcomesConfig, scorer: FrameScorer | None = None) -> OutcomesResult:
    """`scorer`: what a classifier source scores frames with (the job gives the served
    endpoint's client; None: the local checkpoint the source names)."""
    source = parse_source(cfg.source, cfg.success_frames)
    ds = LeRobotDataset(cfg.dataset)  # the folder exists and is a dataset before it is locked
    if cfg.dry_run:
        return _result(ds, source.name, read_outcomes(source, ds, scorer))
    with exclusive_writer(ds.root, "flywheel outcomes"):
        ds = LeRobotDataset(ds.root)  # as it is now, under the lock
        given = read_outcomes(source, ds, scorer)  # every check before anything is staged
        commit_staged(ds.root, stage_episode_outcomes(ds, given))
        result = _result(LeRobotDataset(ds.root), source.name, given)
    result.written = True
    return result


def _result(ds: LeRobotDataset, source: str, given: dict[int, bool]) -> OutcomesResult:
    outcomes = {ep: given.get(ep, ds.episode_outcome(ep)) for ep in ds.episode_indices}
    result = OutcomesResult(str(ds.root), source, outcomes, dict(given))
    for ep, value in outcomes.items():
        task = result.per_task.setdefault(episode_task(ds, ep), [0, 0, 0])
        origin = source if ep in given else (KEPT if value is not None else NONE)
        counts = result.per_source.setdefault(origin, [0, 0, 0])
        slot = 2 if value is None else (0 if value else 1)
        task[slot] += 1
        counts[slot] += 1
    return result


def report_lines(result: OutcomesResult) -> list[str]:
    """The counts per task and per source, as `flywheel outcomes` prints them."""
    lines = [f"Outcomes of {len(result.outcomes)} episodes in {result.dataset}:", "  per task:"]
    for task, (s, f, n) in sorted(result.per_task.items()):
        lines.append(f"    {task!r}: {s} success, {f} failure" + (f", {n} none" if n else ""))
    lines.append("  per source:")
    for origin, (s, f, n) in result.per_source.items():
        counts = f"{n} episode(s)" if origin == NONE else f"{s} success, {f} failure"
        lines.append(f"    {origin}: {counts}")
    if result.uniform is not None:
        lines.append(
            f"warning: every episode is a {'success' if result.uniform else 'failure'}: "
            "a value learned from these outcomes can only learn progress"
        )
    return lines


def dataset_targets(
    ds: LeRobotDataset,
    *,
    c_fail_coef: float = 1.0,
    default_outcome: str | None = None,
    episodes: Sequence[int] | None = None,
) -> dict[int, np.ndarray]:
    """The value targets of the dataset's episodes (all, or `episodes`), T_max per task taken
    over those episodes; episodes without an outcome are a DatasetError naming how to add
    them, unless `default_outcome="failure"`."""
    eps = list(ds.episode_indices if episodes is None else episodes)
    try:
        targets = value_targets(
            [ds.episode_length(ep) for ep in eps],
            [episode_task(ds, ep) for ep in eps],
            [ds.episode_outcome(ep) for ep in eps],
            c_fail_coef=c_fail_coef,
            default_outcome=default_outcome,
            episodes=eps,
            dataset=str(Path(ds.root)),
        )
    except MissingOutcomeError as e:
        raise DatasetError(str(e)) from None
    return dict(zip(eps, targets, strict=True))
