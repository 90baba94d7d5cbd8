"""One writer at a time: an exclusive `flock` on `.flywheel-lock` in the dataset root.

Every writer of a dataset (`exclusive_writer`, or a `WriterLock` held for a recorder's life)
takes the lock without waiting: a second writer gets a one-line `DatasetError` naming the
dataset and the holder (its pid and command, which the holder writes into the lock file).
Only while holding it does a writer finish a killed writer's commit and remove stale
temporaries, so one writer's start-up can no longer delete another's staged files.

Within one process the lock is re-entrant (a recorder holds it and its v3.0 appender takes it
again); a nested hold never tidies (the outer holder's temporaries are its own, in flight).
The lock file is removed by the last release, while still locked; a writer that locked a file
that was meanwhile removed or replaced opens the new one and locks again.

`finish_commit_on_load` is what a reader does on finding a commit journal: finish the commit
under the lock when it may write, or refuse in one line saying what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import sys
import threading
from pathlib import Path

from pipelines.dataset.atomic import (
    JOURNAL,
    finish_interrupted_commit,
    make_folders,
    remove_stale_temps,
)
from pipelines.dataset.errors import DatasetError, one_line

LOCK = ".flywheel-lock"
_held: dict[Path, list] = {}  # this process's locks: resolved root -> [fd, holds]
_guard = threading.Lock()
os.register_at_fork(after_in_child=_held.clear)  # a child is another writer


def _holder(fd: int) -> str:
    """What the lock file says about its holder (one line)."""
    try:
        text = os.pread(fd, 1024, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    return one_line(text) if text.strip() else "a writer that has not said who it is"


def _command() -> str:
    command = shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable
    return command if len(command) <= 200 else command[:197] + "..."


def _open_locked(root: Path, what: str) -> int:
    """A descriptor of `root/LOCK`, exclusively locked; DatasetError when another holds it."""
    path = root / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DatasetError(
                f"{root}: cannot lock the dataset for writing ({one_line(e)})"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise DatasetError(
                    f"{root}: another writer has this dataset open ({holder}); "
                    f"wait for it to end, or stop it"
                ) from None
            raise DatasetError(f"{path}: cannot lock ({one_line(e)})") from e
        try:  # the file locked must still be the one at `path` (a releaser unlinks it)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {what}: {_command()}\n".encode(), 0)
    except OSError:  # only the message to a second writer suffers
        pass
    return fd


class WriterLock:
    """This process's exclusive hold on a dataset (see the module docstring).

    Acquired on creation (the root is created if need be); with `tidy` (the default) the
    first hold finishes an interrupted commit and removes stale temporaries. `release()`
    (or the end of a `with` block) lets it go; it is safe to call more than once.
    """

    def __init__(self, root: str | os.PathLike, what: str, *, tidy: bool = True):
        self.root = Path(root)
        self.what = what
        self._held = False
        try:
            make_folders(self.root)
        except OSError as e:
            raise DatasetError(
                f"{self.root}: cannot create the dataset folder ({one_line(e)})"
            ) from e
        self._key = self.root.resolve()
        with _guard:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] += 1
                self._held = True
                return
            fd = _open_locked(self._key, what)
            _held[self._key] = [fd, 1]
            self._held = True
        if tidy:
            try:
                finish_interrupted_commit(self.root)
                remove_stale_temps(self.root)
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        with _guard:
            if not self._held:
                return
            self._held = False
            entry = _held[self._key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self._key]
            with contextlib.suppress(OSError):
                os.unlink(self._key / LOCK)  # still locked: no one can take this file now
            os.close(entry[0])

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def exclusive_writer(root: str | os.PathLike, what: str, *, tidy: bool = True) -> WriterLock:
    """`with exclusive_writer(root, "flywheel label"):` hold the dataset's writer lock."""
    return WriterLock(root, what, tidy=tidy)


def holds_writer_lock(root: str | os.PathLike) -> bool:
    """Whether this process holds `root`'s writer lock."""
    with _guard:
        return Path(root).resolve() in _held


def finish_commit_on_load(root: str | os.PathLike) -> int:
    """A reader found `root/JOURNAL`: finish the commit if it may, else refuse in one line.

    Returns the files renamed. The commit is finished under the writer lock when the folder is
    writable and no other writer holds it; with another writer at work, or a read-only folder,
    it is a DatasetError saying what to do.
    """
    root = Path(root)
    if not os.access(root, os.W_OK):
        raise DatasetError(
            f"{root}: a commit was interrupted ({JOURNAL} is present) and the folder is "
            f"read-only; open the dataset once where it is writable (e.g. flywheel inspect "
            f"{root}) to finish the commit"
        )
    try:
        lock = WriterLock(root, "finishing an interrupted commit", tidy=False)
    except DatasetError as e:
        raise DatasetError(
            f"{root}: a commit is under way or was interrupted ({JOURNAL} is present): "
            f"{str(e).removeprefix(f'{root.resolve()}: ')}"
        ) from None
    with lock:
        return finish_interrupted_commit(root)
