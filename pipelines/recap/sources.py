"""Where episode outcomes come from: `--from csv:FILE`, `reward`, `set:3,5,9=success`.

`parse_source` checks the text of `--from`; `read_outcomes` gives the outcome of each episode
the source names. Every problem (a malformed source, an unknown or duplicate episode, a value
that is not a boolean, a dataset without `next.reward`) is a one-line DatasetError.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, column_to_numpy, read_columns

REWARD = "next.reward"
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
_FORMS = "csv:FILE, reward or set:3,5,9=success (or =failure)"


@dataclass(frozen=True)
class Source:
    kind: str  # csv, reward, set
    path: Path | None = None  # csv
    episodes: tuple[int, ...] = ()  # set
    success: bool = True  # set

    @property
    def name(self) -> str:
        if self.kind == "csv":
            return f"csv:{self.path}"
        if self.kind == "set":
            eps = ",".join(map(str, self.episodes))
            return f"set:{eps}={'success' if self.success else 'failure'}"
        return self.kind


def parse_source(text: str) -> Source:
    """`--from`'s value checked (module docstring)."""
    text = (text or "").strip()
    kind, sep, rest = text.partition(":")
    if text == "reward":
        return Source("reward")
    if kind == "csv" and sep and rest.strip():
        return Source("csv", path=Path(rest.strip()))
    if kind == "set" and sep:
        return _parse_set(text, rest)
    if kind == "classifier":
        raise DatasetError(f"--from {text}: the classifier source is not available yet; {_FORMS}")
    raise DatasetError(f"--from {text!r}: not a source; one of {_FORMS}")


def _parse_set(text: str, rest: str) -> Source:
    episodes, eq, value = rest.partition("=")
    value = value.strip().lower()
    if not eq or value not in ("success", "failure"):
        raise DatasetError(f"--from {text}: end with =success or =failure (set:3,5,9=success)")
    out = []
    for part in episodes.split(","):
        part = part.strip()
        if not part.isdigit():
            raise DatasetError(f"--from {text}: {part!r} is not an episode index")
        if int(part) in out:
            raise DatasetError(f"--from {text}: episode {int(part)} is named twice")
        out.append(int(part))
    return Source("set", episodes=tuple(out), success=value == "success")


def read_outcomes(source: Source, ds: LeRobotDataset) -> dict[int, bool]:
    """The outcome of each episode `source` names, checked against `ds`'s episodes."""
    if source.kind == "csv":
        return _from_csv(source.path, ds)
    if source.kind == "reward":
        return _from_reward(ds)
    for ep in source.episodes:
        _known(ds, ep, f"--from {source.name}")
    return dict.fromkeys(source.episodes, source.success)


def _known(ds: LeRobotDataset, ep: int, where: str) -> None:
    if ep not in ds.episodes:
        raise DatasetError(f"{where}: episode {ep} is not in {ds.root} (it lists {_span(ds)})")


def _span(ds: LeRobotDataset) -> str:
    eps = ds.episode_indices
    return f"episodes {eps[0]}-{eps[-1]}" if eps else "no episodes"


def _from_csv(path: Path, ds: LeRobotDataset) -> dict[int, bool]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot be read as CSV ({e.__class__.__name__}: {e})") from e
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip() for c in rows[0]] if rows else []
    if "episode_index" not in header or "success" not in header:
        raise DatasetError(f"{path}: needs the columns episode_index,success (found {header})")
    ei, si = header.index("episode_index"), header.index("success")
    out: dict[int, bool] = {}
    for n, row in enumerate(rows[1:], 2):
        where = f"{path}:{n}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)}")
        cell, value = row[ei].strip(), row[si].strip().lower()
        if not cell.isdigit():
            raise DatasetError(f"{where}: episode_index {cell!r} is not an episode index")
        ep = int(cell)
        _known(ds, ep, where)
        if ep in out:
            raise DatasetError(f"{where}: episode {ep} appears twice")
        if value not in _TRUE | _FALSE:
            raise DatasetError(f"{where}: success {row[si]!r} is not 1/0 or true/false")
        out[ep] = value in _TRUE
    if not out:
        raise DatasetError(f"{path}: no episodes (only a header)")
    return out


def _from_reward(ds: LeRobotDataset) -> dict[int, bool]:
    if REWARD not in ds.features:
        raise DatasetError(
            f"{ds.root}: no {REWARD} feature, so the reward source has nothing to read "
            f"(use --from csv:FILE or set:EPISODES=success)"
        )
    out: dict[int, bool] = {}
    cache: dict[Path, object] = {}
    for ep in ds.episode_indices:
        path = ds.data_file(ep)
        if path not in cache:  # v3.0: several episodes share a file, read it once
            if not path.exists():
                raise DatasetError(f"{ds.relative(path)}: missing (episode {ep})")
            cache.clear()
            cache[path] = read_columns(path, ["episode_index", REWARD])
        table = cache[path]
        eps = column_to_numpy(table, "episode_index")
        reward = column_to_numpy(table, REWARD)[eps == ep]
        if reward.size == 0:
            raise DatasetError(f"{ds.relative(path)}: no frames of episode {ep}")
        out[ep] = bool(np.any(np.nan_to_num(reward, nan=0.0) > 0))
    return out
