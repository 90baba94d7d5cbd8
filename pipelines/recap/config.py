"""`OutcomesConfig`: the options of `flywheel outcomes`."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.flags import FlagConfig, flag


@dataclass
class OutcomesConfig(FlagConfig):
    dataset: str = flag(
        help="LeRobot v2.1 or v3.0 dataset folder (changed in place)", positional=True
    )
    source: str = flag(
        help=(
            "where the outcomes come from: csv:FILE (columns episode_index,success; 1/0 or "
            "true/false), reward (any next.reward > 0 in the episode), or "
            "set:3,5,9=success (or =failure)"
        ),
        option="from",
        metavar="SOURCE",
    )
    dry_run: bool = flag(False, "print the counts, write nothing")
