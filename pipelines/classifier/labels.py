"""Success labels for the reward classifier: a success-frames CSV or a dataset's `next.reward`.

Every source comes down to `EpisodeLabels`: an episode's success frames as half-open ranges
and the frame where its environment reset starts (frames from there on are excluded: they show
the arm being put back, neither success nor failure). Pure and strict: nothing here touches
Ray or torch, and every problem is a `DatasetError` of one line naming the file and the line.

**The success-frames CSV** (seed 002's form), one row per episode::

    episode,success_start,env_reset_start,success_ranges
    0,63,119,
    4,67,129,67-77;89-128
    8,55,,
    9,,,

* `success_start`: the first frame that shows success; frames from there up to
  `env_reset_start` (or the episode's end) are success frames, the frames before are failure.
  Empty (or `nan`): no success frame (a failed episode).
* `env_reset_start`: the first frame of the environment reset; it and every later frame are
  excluded. Empty (or `nan`): no reset frames were recorded.
* `success_ranges` (optional column): the success frames given explicitly, as inclusive
  ranges `a-b` (or single frames `a`) separated by `;` or spaces, for an episode like seed
  002's episode 4, where frames 78-88 between two successes are failure. `success_start`, if
  given, must be where the first range starts.

The header may be left out (the columns are then in the order above). Integral floats (`63.0`,
as pandas writes columns that hold a `nan`) are accepted. An unknown episode, a frame past an
episode's end, overlapping or reversed ranges, a repeated episode, a malformed row: one line
naming the CSV line.

**`next.reward`**: frames whose `next.reward` is 1 are success frames, 0 failure; any other
value is an error (the classifier needs 0/1 labels; give a CSV for datasets with dense rewards).

**Recording** writes the CSV beside the dataset, named after it as seed 002 does:
`<parent>/<dataset folder name>_success_frames.csv` (`success_csv_path`). `flywheel synth
--steps-after-success N` writes the simulator's own state: a frame is a success frame when the
world the cameras rendered was in the success state (the cube held), so `success_start` is one
frame after the first `next.reward` of 1 (a reward follows the action that earned it).
`flywheel robot teleop` writes what the operator said: `success_start` is the frame at which the
success key was taken, which also gets `next.reward` 1 along with the frames recorded after it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.dataset import (
    DatasetError,
    LeRobotDataset,
    atomic_write_text,
    column_to_numpy,
    parquet_column_names,
)

CSV_SUFFIX = "_success_frames.csv"
COLUMNS = ("episode", "success_start", "env_reset_start")
RANGES = "success_ranges"
REWARD = "next.reward"


def success_csv_path(dataset_root: str | os.PathLike) -> Path:
    """Where a dataset's success-frames CSV lives: beside it, `<name>_success_frames.csv`."""
    root = Path(dataset_root).resolve()
    return root.parent / f"{root.name}{CSV_SUFFIX}"


@dataclass(frozen=True)
class EpisodeLabels:
    """One episode's success frames: half-open `[start, stop)` ranges in frame order, `stop`
    None meaning "to the reset (or the end)"; frames from `reset_start` on are excluded.
    `line` is the CSV line the row came from (0 when derived from data)."""

    episode: int
    success: tuple[tuple[int, int | None], ...]
    reset_start: int | None = None
    line: int = 0

    @property
    def success_start(self) -> int | None:
        return self.success[0][0] if self.success else None

    def end(self, length: int) -> int:
        """The first excluded frame: the reset, or the episode's length."""
        return length if self.reset_start is None else min(self.reset_start, length)

    def arrays(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels uint8, keep bool) for an episode of `length` frames."""
        end = self.end(length)
        labels = np.zeros(length, np.uint8)
        for start, stop in self.success:
            labels[start : end if stop is None else min(stop, end)] = 1
        keep = np.zeros(length, bool)
        keep[:end] = True
        return labels, keep

    def to_json(self) -> dict:
        return {"success": [list(r) for r in self.success], "reset_start": self.reset_start}

    @classmethod
    def from_json(cls, episode: int, data: Mapping) -> EpisodeLabels:
        success = tuple((int(a), None if b is None else int(b)) for a, b in data["success"])
        return cls(int(episode), success, data.get("reset_start"))


def from_mask(episode: int, success: np.ndarray, reset_start: int | None = None) -> EpisodeLabels:
    """EpisodeLabels from a per-frame success mask (the runs of True become the ranges)."""
    mask = np.asarray(success, bool)
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    runs: list = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    end = len(mask) if reset_start is None else reset_start
    if len(runs) == 1 and runs[0][1] >= end:  # success to the end: a plain success_start row
        runs = [(runs[0][0], None)]
    return EpisodeLabels(episode, tuple(runs), reset_start)


def from_reward(episode: int, reward: np.ndarray, where: str) -> EpisodeLabels:
    """EpisodeLabels from an episode's `next.reward` (1 success, 0 failure); `where` names it."""
    reward = np.asarray(reward, np.float64)
    bad = np.flatnonzero(~np.isin(reward, (0.0, 1.0)))
    if len(bad):
        raise DatasetError(
            f"{where}: next.reward is {float(reward[bad[0]])!r} at frame {int(bad[0])}; the "
            "classifier needs 0/1 success labels (give --labels with a success-frames CSV)"
        )
    return from_mask(episode, reward == 1.0)


# --------------------------------------------------------------------------- the CSV


def _integer(cell: str, what: str, where: str, optional: bool) -> int | None:
    text = cell.strip()
    if text.lower() in ("", "nan", "none", "null") and optional:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise DatasetError(f"{where}: {what} {text!r} is not a frame number (an integer >= 0)")
    return int(value)


def _ranges(cell: str, where: str) -> list[tuple[int, int]]:
    """'67-77;89-128' -> [(67, 78), (89, 129)] (half-open), sorted; overlaps are errors."""
    out = []
    for part in re.split(r"[;\s]+", cell.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:\.0)?(?:-(\d+)(?:\.0)?)?", part)
        if m is None:
            raise DatasetError(f"{where}: success_ranges {part!r} is not a range 'a-b' or a frame")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise DatasetError(f"{where}: success_ranges {part!r} ends before it starts")
        out.append((a, b + 1))
    out.sort()
    for (a0, b0), (a1, b1) in zip(out, out[1:], strict=False):
        if a1 < b0:
            raise DatasetError(f"{where}: success_ranges {a0}-{b0 - 1} and {a1}-{b1 - 1} overlap")
    return out


def parse_success_csv(text: str, path: str = "success frames CSV") -> dict[int, EpisodeLabels]:
    """Parse a success-frames CSV (module docstring); every row checked on its own."""
    header: list[str] | None = None
    rows = []
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        names = [c.strip().lower() for c in cells]
        if header is None:
            if names[0] == "episode":
                unknown = [n for n in names if n not in (*COLUMNS, RANGES)]
                missing = [n for n in COLUMNS if n not in names]
                if unknown or missing or len(set(names)) != len(names):
                    raise DatasetError(
                        f"{path}:line {line}: header {','.join(names)!r}: the columns are "
                        f"{','.join(COLUMNS)} and optionally {RANGES}"
                    )
                header = names
                continue
            header = list(COLUMNS) + ([RANGES] if len(cells) == 4 else [])
        rows.append((line, cells))
    labels: dict[int, EpisodeLabels] = {}
    for line, cells in rows:
        where = f"{path}:line {line}"
        if len(cells) != len(header):
            raise DatasetError(
                f"{where}: {len(cells)} fields, expected {len(header)} ({','.join(header)})"
            )
        row = dict(zip(header, cells, strict=True))
        episode = _integer(row["episode"], "episode", where, optional=False)
        start = _integer(row["success_start"], "success_start", where, optional=True)
        reset = _integer(row["env_reset_start"], "env_reset_start", where, optional=True)
        explicit = _ranges(row.get(RANGES, ""), where)
        if explicit:
            if start is not None and start != explicit[0][0]:
                raise DatasetError(
                    f"{where}: success_start {start} but success_ranges starts at {explicit[0][0]}"
                )
            success = tuple(explicit)
            last = explicit[-1][1] - 1
            if reset is not None and last >= reset:
                raise DatasetError(
                    f"{where}: success_ranges reach frame {last}, past env_reset_start {reset} "
                    "(reset frames are excluded)"
                )
        else:
            success = () if start is None else ((start, None),)
            if start is not None and reset is not None and start >= reset:
                raise DatasetError(
                    f"{where}: success_start {start} is not before env_reset_start {reset}"
                )
        if episode in labels:
            raise DatasetError(
                f"{where}: episode {episode} is labeled twice (also on line {labels[episode].line})"
            )
        labels[episode] = EpisodeLabels(episode, success, reset, line)
    if not labels:
        raise DatasetError(f"{path}: no rows (expected {','.join(COLUMNS)})")
    return labels


def read_success_csv(path: str | os.PathLike) -> dict[int, EpisodeLabels]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such success-frames CSV") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
    return parse_success_csv(text, str(path))


def check_against(
    labels: Mapping[int, EpisodeLabels], lengths: Mapping[int, int], path: str
) -> None:
    """Every row names an episode of the dataset and frames inside it."""
    for ep in labels.values():
        where = f"{path}:line {ep.line}"
        if ep.episode not in lengths:
            known = sorted(lengths)
            span = f"{known[0]}-{known[-1]}" if known else "none"
            raise DatasetError(f"{where}: episode {ep.episode} is not in the dataset ({span})")
        n = lengths[ep.episode]
        frames = f"episode {ep.episode} has {n} frames, 0-{n - 1}"
        if ep.success_start is not None and ep.success_start >= n:
            raise DatasetError(
                f"{where}: success_start {ep.success_start} is past its end ({frames})"
            )
        if ep.reset_start is not None and ep.reset_start > n:
            raise DatasetError(
                f"{where}: env_reset_start {ep.reset_start} is past its end ({frames})"
            )
        stops = [b for _, b in ep.success if b is not None]
        if stops and max(stops) > n:
            raise DatasetError(
                f"{where}: success_ranges reach frame {max(stops) - 1}, past its end ({frames})"
            )


def format_success_csv(labels: Iterable[EpisodeLabels]) -> str:
    """The CSV text for `labels` (the ranges column only when some episode needs it)."""
    labels = sorted(labels, key=lambda e: e.episode)

    def explicit(e: EpisodeLabels) -> bool:  # not just "from success_start to the end"
        return len(e.success) > 1 or (
            len(e.success) == 1 and e.success[0][1] not in (None, e.reset_start)
        )

    gaps = any(explicit(e) for e in labels)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, RANGES] if gaps else COLUMNS)
    for e in labels:
        reset = "" if e.reset_start is None else e.reset_start
        start = "" if e.success_start is None else e.success_start
        row = [e.episode, start, reset]
        if gaps:
            ranges = []
            if explicit(e):
                for a, b in e.success:
                    if b is None:
                        raise ValueError(f"episode {e.episode}: an open range among several")
                    ranges.append(f"{a}-{b - 1}" if b - 1 > a else f"{a}")
            row.append(";".join(ranges))
        writer.writerow(row)
    return out.getvalue()


def write_success_csv(path: str | os.PathLike, labels: Iterable[EpisodeLabels]) -> Path:
    path = Path(path)
    atomic_write_text(path, format_success_csv(labels))
    return path


def sync_success_csv(dataset_root: str | os.PathLike) -> Path | None:
    """Add a row for every episode the dataset's success-frames CSV lacks, from `next.reward`.

    For recorders whose `next.reward` marks the success frames (`flywheel robot teleop`). Rows
    already in the CSV are kept as they are (they may have been corrected by hand). Returns the
    CSV's path, or None when there is no dataset yet.
    """
    root = Path(dataset_root)
    if not (root / "meta" / "info.json").exists():
        return None
    ds = LeRobotDataset(root)
    path = success_csv_path(root)
    rows = read_success_csv(path) if path.exists() else {}
    missing = [e for e in ds.episode_indices if e not in rows]
    if not missing and path.exists():
        return path
    for e in missing:
        reward = column_to_numpy(ds.read_episode(e, [REWARD]), REWARD)
        rows[e] = from_reward(e, reward, f"{ds.relative(ds.data_file(e))} (episode {e})")
    return write_success_csv(path, rows.values())


def read_labels(
    ds: LeRobotDataset, csv_path: str | None, episodes: list[int] | None
) -> tuple[dict[int, EpisodeLabels], str, list[int]]:
    """(labels per episode, the label source, dataset episodes left unlabeled); all checked.

    From the success-frames CSV `csv_path`, or from the dataset's next.reward when None."""
    known = ds.episode_indices
    if episodes is not None:
        unknown = sorted(set(episodes) - set(known))
        if unknown:
            raise DatasetError(f"{ds.root}: episodes {unknown} are not in the dataset")
    wanted = list(known if episodes is None else episodes)
    files: dict = {}
    for e in wanted:
        files.setdefault(ds.data_file(e), e)
    for path, e in files.items():  # every file readable (footers only)
        if not path.exists():
            raise DatasetError(f"{ds.relative(path)}: missing (episode {e})")
        names = parquet_column_names(path)
        if csv_path is None and REWARD not in names:
            raise DatasetError(
                f"{ds.relative(path)}: no {REWARD!r} column to label from (give --labels CSV)"
            )
    if csv_path is not None:
        path = Path(csv_path)
        labels = read_success_csv(path)
        check_against(labels, {e: ds.episode_length(e) for e in known}, str(path))
        chosen = {e: labels[e] for e in wanted if e in labels}
        return chosen, str(path.resolve()), [e for e in wanted if e not in labels]
    chosen = {}
    for e in wanted:
        table = ds.read_episode(e, [REWARD])
        where = f"{ds.relative(ds.data_file(e))} (episode {e})"
        chosen[e] = from_reward(e, column_to_numpy(table, REWARD), where)
    return chosen, REWARD, []
