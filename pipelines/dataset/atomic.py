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

from pipelines.dataset.errors import DatasetError, one_line

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
    make_folders(path.parent)
    return path.parent / f".{path.name}{_TEMP_MARK}{uuid.uuid4().hex}.tmp{path.suffix}"


def make_folders(folder: str | os.PathLike) -> None:
    """`mkdir -p folder`, durably: each folder made is fsynced into its parent.

    Without it a file renamed into a new folder (and that folder fsynced) can still vanish
    with the folder after a power loss: the folder's own entry was never flushed.
    """
    folder = want = Path(folder)
    if folder.is_dir():
        return
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_path(new.parent)
    want.mkdir(parents=True, exist_ok=True)  # a file in the way: FileExistsError, as before


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
    for tmp, _target in rel:  # nothing moves unless every staged file is still there
        if not (root / tmp).exists():
            raise DatasetError(
                f"{root / tmp}: a staged file vanished before its commit (another writer?)"
            )
    atomic_write_json(root / JOURNAL, {"replace": rel})
    _finish(root, rel, first=True)


def finish_interrupted_commit(root: str | os.PathLike) -> int:
    """Complete the commit a killed process left under `root`; returns the files it renamed.

    The journal is read as untrusted input (a dataset may come from anywhere): every pair must
    be a temporary named as `temp_path_for` names them and its target, the same file name in
    the same folder, both inside `root`. Anything else is a `DatasetError` and nothing moves.
    """
    root = Path(root)
    path = root / JOURNAL
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable commit journal ({one_line(e)})") from e
    return _finish(root, journal_pairs(path, journal), first=False)


def journal_pairs(path: Path, journal) -> list[list[str]]:
    """The journal's (temporary, target) pairs, each checked (`finish_interrupted_commit`)."""
    pairs = journal.get("replace") if isinstance(journal, dict) else None
    if not isinstance(pairs, list):
        raise DatasetError(f"{path}: not a commit journal (no 'replace' list)")
    root = path.parent.resolve()
    for pair in pairs:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        ):
            raise DatasetError(f"{path}: a 'replace' entry is not a [temporary, target] pair")
        tmp, target = (Path(x) for x in pair)
        where = f"{path}: entry {pair!r}"
        for p in (tmp, target):
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise DatasetError(f"{where} leaves the dataset folder")
            resolved = (root / p).resolve()
            if resolved != root and root not in resolved.parents:
                raise DatasetError(f"{where} leaves the dataset folder")
        if tmp.parent != target.parent or not is_temp(tmp.name):
            raise DatasetError(f"{where} is not a temporary and its sibling target")
        if not tmp.name.startswith(f".{target.name}{_TEMP_MARK}"):
            raise DatasetError(f"{where}: the temporary is not the target's")
    return pairs


def _finish(root: Path, pairs: list[list[str]], first: bool) -> int:
    done = 0
    folders = set()
    for tmp, target in pairs:
        if (root / tmp).exists():  # renamed already when a killed commit is finished
            os.replace(root / tmp, root / target)
            folders.add((root / target).parent)
            done += 1
            _failpoint("commit", done)
        elif first:  # in the commit itself every temporary must be there
            raise DatasetError(
                f"{root / tmp}: a staged file vanished before its commit (another writer?); "
                f"{root / JOURNAL} is left for the next writer to finish"
            )
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
