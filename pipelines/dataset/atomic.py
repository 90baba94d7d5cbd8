"""Atomic, durable writes: a temporary sibling, fsynced, renamed into place, folder fsynced.

A reader, a rerun after kill -9 and a machine that loses power all see either the old file or
the new one, never a truncated one: the data reaches the disk (fsync of the file) before the
rename makes it visible, and the rename itself reaches the disk (fsync of the folder) before
the write returns. Temporary files are named `.<name>.flywheel-<uuid>.tmp[.<ext>]`;
`remove_stale_temps` deletes what a killed writer left behind.

`FLYWHEEL_FSYNC=0` turns the fsyncs off (atomic against kill -9 only); it exists to measure
what durability costs (`benchmarks/label_benchmark.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

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
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            if _durable():
                os.fsync(f.fileno())
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
