"""Calls into a codec library that may never return, run with a deadline (the `VideoWriter`).

A `CallThread` owns one daemon thread and runs the calls given to `call()` on it, one at a
time, in order; the caller waits for each at most `timeout` seconds. A call still running at
its deadline raises `Stalled` in the caller and marks the thread stuck: it is never given
another call, and the objects its call holds stay referenced by that thread (so nothing
frees a codec context that a blocked library thread still uses). The thread is a daemon: a
process whose encoder hung still exits. PyAV releases the GIL inside `avcodec_send_frame`,
where SVT-AV1's flush was seen blocked forever, so the caller's wait does time out.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from pipelines.dataset.errors import DatasetError

# How long one encoder call (a frame, the final flush, closing the file) may take before the
# video writer gives up on it. A 480x640 AV1 frame takes milliseconds, a flush well under a
# second; minutes of nothing is a stuck encoder, not a slow one.
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "FLYWHEEL_ENCODER_TIMEOUT_S"


class Stalled(Exception):
    """A call did not return within its deadline (it may still be running, or never end)."""


def encoder_timeout() -> float:
    """The deadline of one encoder call: `FLYWHEEL_ENCODER_TIMEOUT_S`, else the default."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DatasetError(f"{TIMEOUT_ENV}={raw!r}: a number of seconds above 0")
    return value


class CallThread:
    """One daemon thread running calls in order, each awaited with a deadline (module doc)."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.stuck = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done, box = job
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed to the caller
                box.append((False, e))
            del fn, job
            done.set()

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """fn() on the thread; its result or its exception; `Stalled` after `timeout` s."""
        if self.stuck:
            raise Stalled
        done, box = threading.Event(), []
        self._jobs.put((fn, done, box))
        if not done.wait(timeout):
            self.stuck = True
            raise Stalled
        ok, value = box[0]
        if ok:
            return value
        raise value

    def stop(self) -> None:
        """End the thread once its calls are done (a stuck one never ends: it is a daemon)."""
        self._jobs.put(None)
