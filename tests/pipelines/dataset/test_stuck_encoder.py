"""A video encoder that never returns (SVT-AV1's flush, blocked on a futex) ends the writer, and
the job that writes, with a one-line error naming the file; nothing half-written stays."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines import dataset as dsl
from pipelines.dataset import DatasetError
from pipelines.dataset.video import has_encoder
from pipelines.dataset.watchdog import TIMEOUT_ENV, CallThread, Stalled, encoder_timeout
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]
CODEC = "av1" if has_encoder("av1") else "mpeg4"
LIVENESS_S = 120.0  # how long a test waits for what must end (a busy 2-core machine)


class StuckStream:
    """A writer's stream whose `encode` blocks until `release` is set: on the flush
    (`encode(None)`) only, or from frame `stick_at` on."""

    def __init__(self, real, stick_at: int | None = None):
        self.real = real
        self.stick_at = stick_at
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def encode(self, frame=None):
        n, self.calls = self.calls, self.calls + 1
        if frame is None or (self.stick_at is not None and n >= self.stick_at):
            self.entered.set()
            self.release.wait()
        try:
            return self.real.encode(frame)
        finally:
            if self.entered.is_set():
                self.returned.set()


def ends_within(fn, timeout: float = LIVENESS_S):
    """fn() on a helper thread: (finished, its exception or None). A call that hangs (the code
    before the watchdog) fails the test instead of hanging it."""
    box = []

    def target():
        try:
            fn()
            box.append(None)
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return (not t.is_alive()), (box[0] if box else None)


def frames(n: int, size: int = 32) -> list[np.ndarray]:
    out = []
    for t in range(n):
        f = np.zeros((size, size, 3), np.uint8)
        f[..., 1] = np.linspace(0, 200, size, dtype=np.uint8)[None, :]
        f[4:12, (2 * t) % (size - 8) :][:, :8, 0] = 220
        out.append(f)
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def stuck_writer(tmp_path):
    """A writer with 3 frames written whose flush never returns until released."""
    w = dsl.VideoWriter(tmp_path / "cam.mp4", 10, 32, 32, codec=CODEC, timeout_s=1.0)
    stream = StuckStream(w._stream)
    try:
        for f in frames(3):
            w.write(f)
        w._stream = stream
        yield w, stream
    finally:
        stream.release.set()  # let the thread finish, whatever the test did


def test_stuck_flush_is_a_one_line_error_naming_the_file(stuck_writer, tmp_path):
    w, stream = stuck_writer
    t0 = time.monotonic()
    finished, error = ends_within(w.close)
    assert finished, "close() hung on a stuck encoder"
    assert stream.entered.is_set()
    assert time.monotonic() - t0 < LIVENESS_S
    assert isinstance(error, DatasetError)
    msg = str(error)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'cam.mp4'}: the {CODEC} encoder stalled flushing 3")
    assert TIMEOUT_ENV in msg and "nothing was saved" in msg
    assert leftovers(tmp_path) == []  # no video, no temporary
    # the encoder coming back late writes nothing in place either
    stream.release.set()
    assert wait_until(stream.returned.is_set, LIVENESS_S)
    assert wait_until(lambda: not w._calls._thread.is_alive(), LIVENESS_S)
    assert leftovers(tmp_path) == []
    # a stuck writer stays an error, at once
    finished, again = ends_within(w.close, 30)
    assert finished and isinstance(again, DatasetError)


def test_abort_with_a_stuck_flush_returns_and_leaves_nothing(stuck_writer, tmp_path):
    w, stream = stuck_writer
    finished, error = ends_within(w.abort)
    assert finished, "abort() hung on a stuck encoder"
    assert error is None
    assert stream.entered.is_set()
    assert leftovers(tmp_path) == []


def test_stuck_frame_then_close_and_abort(tmp_path):
    w = dsl.VideoWriter(tmp_path / "cam.mp4", 10, 32, 32, codec=CODEC, timeout_s=1.0)
    stream = StuckStream(w._stream, stick_at=2)
    w._stream = stream
    try:
        pictures = frames(4)
        w.write(pictures[0])
        w.write(pictures[1])
        finished, error = ends_within(lambda: w.write(pictures[2]))
        assert finished, "write() hung on a stuck encoder"
        assert isinstance(error, DatasetError)
        expected = f"{tmp_path / 'cam.mp4'}: the {CODEC} encoder stalled at frame 2"
        assert str(error).startswith(expected)
        assert w.frames == 2
        for call in (lambda: w.write(pictures[3]), w.close):  # no second wait: refused at once
            t0 = time.monotonic()
            finished, error = ends_within(call, 30)
            assert finished and isinstance(error, DatasetError)
            assert time.monotonic() - t0 < 0.9 * LIVENESS_S
        finished, error = ends_within(w.abort, 30)
        assert finished and error is None
        assert leftovers(tmp_path) == []
    finally:
        stream.release.set()


def test_normal_writes_still_save_the_video(tmp_path):
    path = tmp_path / "ok.mp4"
    with dsl.VideoWriter(path, 10, 32, 32, codec=CODEC, timeout_s=30) as w:
        for f in frames(5):
            w.write(f)
    assert dsl.count_video_frames(path) == 5
    assert leftovers(tmp_path) == ["ok.mp4"]
    assert wait_until(lambda: not w._calls._thread.is_alive(), LIVENESS_S)


def test_dropped_writer_ends_its_thread(tmp_path):
    w = dsl.VideoWriter(tmp_path / "x.mp4", 10, 32, 32, codec=CODEC)
    thread = w._calls._thread
    del w
    assert wait_until(lambda: not thread.is_alive(), LIVENESS_S)


def test_call_thread_deadline_and_order():
    calls = CallThread("t")
    try:
        assert calls.call(lambda: 7, 30) == 7
        with pytest.raises(ZeroDivisionError):
            calls.call(lambda: 1 / 0, 30)
        gate = threading.Event()
        with pytest.raises(Stalled):
            calls.call(gate.wait, 0.2)
        assert calls.stuck
        with pytest.raises(Stalled):  # never queued behind the stuck call
            calls.call(lambda: 1, 30)
        gate.set()
    finally:
        calls.stop()


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "inf", "nan"])
def test_timeout_env_is_checked(monkeypatch, raw):
    monkeypatch.setenv(TIMEOUT_ENV, raw)
    with pytest.raises(DatasetError, match=f"^{TIMEOUT_ENV}="):
        encoder_timeout()


def test_timeout_env_sets_the_deadline(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert encoder_timeout() == 2.5
    monkeypatch.delenv(TIMEOUT_ENV)
    assert encoder_timeout() > 60


# Every Python process of the job (the driver, Ray's workers) runs this at start-up: the
# writers' flush then blocks forever, as SVT-AV1's did.
STUCK_SITECUSTOMIZE = """
import os
if os.environ.get("FLYWHEEL_TEST_STUCK_FLUSH") == "1":
    try:
        import threading
        from pipelines.dataset import video

        def _finish(self):
            threading.Event().wait()

        video.VideoWriter._finish = _finish
    except Exception:
        pass
"""


def test_collect_with_a_stuck_encoder_ends_with_a_one_line_error(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STUCK_SITECUSTOMIZE)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO)]),
        FLYWHEEL_TEST_STUCK_FLUSH="1",
        **{TIMEOUT_ENV: "3"},
    )
    cmd = [sys.executable, "-c", "import sys; from pipelines.cli import run; sys.exit(run())"]
    cmd += ["collect", str(out), "--episodes", "2"]
    cmd += ["--image-size", "32", "--vcodec", CODEC, "--seed", "3"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("flywheel collect: error: /"), err[-3000:]
    assert ".mp4: the" in last and "encoder stalled flushing" in last, last
    # no video in place (temporaries of writers the job never got to close stay hidden, for
    # collect's next run to remove)
    videos = out / "videos"
    assert not [p for p in videos.rglob("*.mp4") if not p.name.startswith(".")]
