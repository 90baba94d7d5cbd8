"""`flywheel outcomes DATASET --from SOURCE`: each episode's success flag, in place.

Writes `episode_success` (the field Evo-RL's recorder and value trainer use) into v2.1
`meta/episodes.jsonl` or v3.0's `meta/episodes/` parquet files, as one atomic commit under the
dataset's writer lock; episodes the source does not name keep theirs. Sources: `csv:FILE`
(columns episode_index,success), `reward` (any next.reward > 0 in the episode),
`set:3,5,9=success` (or =failure). The design is in `pipelines.recap.outcomes`; this module
parses the flags.

Also `python -m pipelines.outcomes` (for `ray job submit`).
"""

from __future__ import annotations

from pipelines.recap import OutcomesConfig, OutcomesResult, run
from pipelines.recap.outcomes import report_lines
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process

__all__ = ["OutcomesConfig", "OutcomesResult", "build_parser", "main", "run"]


def report(cfg: OutcomesConfig, result: OutcomesResult) -> list[str]:
    lines = report_lines(result)
    if not result.written:
        return [*lines, "(dry run: nothing written)"]
    return [*lines, f"Results: {result.dataset} (episode_success in meta/episodes)"]


JOB = Job("outcomes", __doc__, OutcomesConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.outcomes"))
