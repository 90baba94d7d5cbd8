"""Atomic, durable writes: a temporary sibling, fsynced, renamed into place, folder fsynced.

A reader, a rerun after kill -9 and a machine that loses power all see either the old file or
the new one, never a truncated one: the data reaches the disk (fsync of the file) before the
rename makes it visible, and the rename itself reaches the disk (fsync of the folder) before
the write returns. Temporary files are named `.<name>.flywheel-<uuid>.tmp[.<ext>]`;
`remove_stale_temps` deletes what a killed writer left behind.

Several files that must change together (a relabeled dataset: data files and metadata) go in
as one commit: each new file is first staged as a fsynced temporary beside its target; only when
all are staged does `commit_staged` write a journal (`.flywheel-commit.json` at the dataset
root, itself atomic) listing every temporary and its target, rename them all, and remove the
journal. A process killed before the journal exists leaves the dataset as it was (plus
temporaries, removed by the next run); one killed during the renames leaves the journal, and
`finish_interrupted_commit`, which every writer runs first, completes them.

`FLYWHEEL_FSYNC=0` turns the fsyncs off (atomic against kill -9 only); it exists to measure
what durability costs (`benchmarks/label_benchmark.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import uuid
from collections.abc import Iterable
from pathlib import Path

JOURNAL = ".flywheel-commit.json"
_TEMP_MARK = ".flywheel-"
_TEMP_RE = re.compile(r"^\..+\.flywheel-[0-9a-f]{32}\.tmp(\.\w+)?$")


def _durable() -> bool:
    return os.environ.get("FLYWHEEL_FSYNC", "1") != "0"


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    if not _durable():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename an already fsynced `tmp` onto `path` and fsync the folder (the rename itself)."""
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def temp_path_for(path: str | os.PathLike) -> Path:
    """A temporary sibling of `path` (for writers, such as video encoders, that need a name).

    It keeps the suffix, for tools that sniff the extension. Move it into place with
    `replace_durably` once fsynced; `remove_stale_temps` deletes leftovers after a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}{_TEMP_MARK}{uuid.uuid4().hex}.tmp{path.suffix}"


def is_temp(name: str) -> bool:
    return bool(_TEMP_RE.match(name))


@contextlib.contextmanager
def staging(path: str | os.PathLike, mode: str = "w"):
    """Write a fsynced temporary sibling of `path`; yields (file, temporary path).

    The temporary is left for the caller to put in place (`replace_durably`, or as part of a
    `commit_staged`); on an exception it is removed.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f, tmp
            f.flush()
            if _durable():
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage_text(path: str | os.PathLike, text: str) -> Path:
    """`text` in a fsynced temporary sibling of `path` (not yet in place)."""
    with staging(path) as (f, tmp):
        f.write(text)
    return tmp


def stage_json(path: str | os.PathLike, obj) -> Path:
    return stage_text(path, json.dumps(obj, indent=4) + "\n")


def stage_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return stage_text(path, "".join(json.dumps(r) + "\n" for r in rows))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    with staging(path, mode) as (f, tmp):
        yield f
    try:
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=4) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed writer left under `folder`; returns how many."""
    removed = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if is_temp(name):
                os.unlink(os.path.join(dirpath, name))
                removed += 1
    return removed


# --------------------------------------------------------------------------- commits


def commit_staged(root: str | os.PathLike, staged: list[tuple[Path, Path]]) -> None:
    """Put staged temporaries in place as one unit (see the module docstring).

    `staged` lists (temporary, target) pairs, in the order they go in (metadata last).
    """
    root = Path(root)
    rel = [[str(Path(t).relative_to(root)), str(Path(p).relative_to(root))] for t, p in staged]
    atomic_write_json(root / JOURNAL, {"replace": rel})
    _finish(root, rel)


def finish_interrupted_commit(root: str | os.PathLike) -> int:
    """Complete the commit a killed process left under `root`; returns the files it renamed."""
    root = Path(root)
    try:
        journal = json.loads((root / JOURNAL).read_text())
    except FileNotFoundError:
        return 0
    except (OSError, json.JSONDecodeError) as e:  # atomic: cannot be half written, but say so
        from pipelines.dataset.errors import DatasetError

        raise DatasetError(f"{root / JOURNAL}: unreadable commit journal ({e})") from e
    return _finish(root, journal["replace"])


def _finish(root: Path, pairs: list[list[str]]) -> int:
    done = 0
    folders = set()
    for tmp, target in pairs:
        if (root / tmp).exists():  # renamed already when a killed commit is finished
            os.replace(root / tmp, root / target)
            folders.add((root / target).parent)
            done += 1
            _failpoint("commit", done)
    for folder in sorted(folders):
        fsync_path(folder)
    (root / JOURNAL).unlink()
    fsync_path(root)
    return done


def _failpoint(name: str, count: int) -> None:
    """Tests only: FLYWHEEL_FAILPOINT=<name>:<n> kills this process (SIGKILL) at the n-th event.

    A kill between two renames of a commit cannot be timed from outside (the renames take
    microseconds); this is how the kill-and-rerun test lands one there.
    """
    point = os.environ.get("FLYWHEEL_FAILPOINT")
    if point and point == f"{name}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)
