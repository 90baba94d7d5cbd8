"""Teleoperation: the follower follows the leader at a fixed rate, and episodes are recorded.

`TeleopSession` drives Ray actors (a `FollowerArm`, a `LeaderArm`, cameras) from the driver: at
every tick of an absolute-time grid (default 30 Hz) it reads the follower's joints, the newest
frame of every camera and the leader's joints, records the frame (observation = follower and
cameras, action = leader), and sends the leader's joints to the follower. Frames live in the
driver until the episode is saved, so an arm actor that dies and is restarted by Ray (it
handshakes again) costs a late tick, not a recorded frame.

Controls, from the keyboard (`KeyboardControls`: s success, f failure, r re-record, q stop) or
from code (`success()`, `failure()`, `rerecord()`, `stop()`, thread-safe): an episode ends on
success or failure (saved, reward 1.0 on the last frame for a success), at its time limit
(saved with reward 0), or on stop (saved, then the session ends); re-record drops it and starts
it again. The episode's outcome, `episode_success` in the dataset's episodes metadata, is what
s or f said (true, false); an episode ended without either (time limit, stop) has none (null),
for `flywheel outcomes` to add.

Controls belong to the episode they were given in. Each recording attempt (a re-record is a new
one) has a number, `attempt`; a control that names its attempt (`success(attempt=n)`, what an
automatic judge such as the simulator's success watcher does) is ignored once that attempt has
ended, and a control left pending when an episode ends (it lost the race with the time limit) is
dropped, not applied to the next episode. Only `stop` carries over: the session then ends
before starting another episode.

With `steps_after_success` N (seed 002's `number_of_steps_after_success`), a success does not
end the episode at once: N more frames are recorded, and the frame at which the success was
taken and every frame after it get reward 1.0 (the operator said the scene shows success from
there on; the success-frames CSV written beside the dataset says the same). A failure, re-record
or stop during those frames ends the episode as it would otherwise; the time limit then saves it
as a success.
"""

from __future__ import annotations

import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from pipelines.dataset import EpisodeRecorder

SUCCESS, FAILURE, RERECORD, STOP, TIMEOUT = "success", "failure", "rerecord", "stop", "timeout"
OUTCOMES = {SUCCESS: True, FAILURE: False}  # an episode's episode_success; others: None


@dataclass
class TeleopOutcome:
    episode_index: int
    frames: int
    outcome: str
    late_ticks: int = 0
    periods_ms: list[float] = field(default_factory=list, repr=False)


class TeleopSession:
    def __init__(
        self,
        follower,
        leader,
        cameras: dict,
        recorder: EpisodeRecorder,
        fps: float = 30.0,
        episode_time_s: float = 30.0,
        on_episode_start=None,
        steps_after_success: int = 0,
    ):
        self.follower, self.leader, self.cameras = follower, leader, dict(cameras)
        self.recorder = recorder
        self.fps = fps
        self.episode_time_s = episode_time_s
        self.on_episode_start = on_episode_start
        self.steps_after_success = steps_after_success
        self._event: str | None = None
        self._lock = threading.Lock()
        self.attempt = 0
        """Number of the recording attempt under way (1, 2, ...; a re-record is a new one)."""
        self.frames_this_episode = 0

    # ------------------------------------------------------------------ controls

    def _signal(self, event: str, attempt: int | None) -> None:
        with self._lock:
            if attempt is not None and attempt != self.attempt:
                return  # meant for an attempt that has ended
            if self._event is None or event == STOP:
                self._event = event

    def success(self, attempt: int | None = None) -> None:
        """End the episode as a success (only attempt `attempt`, if given)."""
        self._signal(SUCCESS, attempt)

    def failure(self, attempt: int | None = None) -> None:
        self._signal(FAILURE, attempt)

    def rerecord(self, attempt: int | None = None) -> None:
        self._signal(RERECORD, attempt)

    def stop(self) -> None:
        self._signal(STOP, None)

    def _take_event(self) -> str | None:
        with self._lock:
            event, self._event = self._event, None
            return event

    def _begin_attempt(self) -> None:
        with self._lock:
            self.attempt += 1
            self.frames_this_episode = 0
            if self._event != STOP:
                self._event = None  # a control that came too late for the previous episode

    def _stop_pending(self) -> bool:
        with self._lock:
            return self._event == STOP

    # ------------------------------------------------------------------ the loop

    def _tick(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        import ray

        state_ref = self.follower.read.remote()
        frame_refs = {k: cam.latest.remote() for k, cam in self.cameras.items()}
        action_ref = self.leader.read.remote()
        state, action = ray.get([state_ref, action_ref])
        images = {
            k: v[0] for k, v in zip(frame_refs, ray.get(list(frame_refs.values())), strict=True)
        }
        ray.get(self.follower.command.remote(action))
        return state, action, images

    def record_episode(self) -> TeleopOutcome:
        """Record one episode (re-recording it as asked); returns how it ended."""
        while True:
            if self.on_episode_start is not None:
                self.on_episode_start()
            ep = self.recorder.begin()
            self._begin_attempt()
            period = 1.0 / self.fps
            start = time.monotonic()
            deadline = start + self.episode_time_s
            next_tick, last, late = start, None, 0
            periods = []
            event = None
            success_at = None  # the frame at which a success was taken (steps_after_success)
            while event is None:
                now = time.monotonic()
                if now >= deadline:
                    event = TIMEOUT if success_at is None else SUCCESS
                    break
                if next_tick > now:
                    time.sleep(next_tick - now)
                tick_start = time.monotonic()
                if last is not None:
                    periods.append((tick_start - last) * 1000)
                last = tick_start
                try:
                    state, action, images = self._tick()
                    self.recorder.add(state, action, images)
                except BaseException:
                    self.recorder.discard()  # the episode's videos must not be left half made
                    raise
                self.frames_this_episode += 1
                next_tick += period
                if time.monotonic() > next_tick:  # this tick overran the next slot
                    late += 1
                    next_tick = time.monotonic()
                event = self._take_event()
                if success_at is not None and event in (None, SUCCESS):
                    done = self.frames_this_episode > success_at + self.steps_after_success
                    event = SUCCESS if done else None
                elif event == SUCCESS and self.steps_after_success:
                    success_at, event = self.frames_this_episode - 1, None
            if event == RERECORD:
                self.recorder.discard()
                continue
            meta = self.recorder.save(
                success=event == SUCCESS,
                success_from=success_at,
                episode_success=OUTCOMES.get(event),
            )
            return TeleopOutcome(ep, meta["length"], event, late, periods)

    def run(self, episodes: int) -> list[TeleopOutcome]:
        outcomes = []
        for _ in range(episodes):
            if self._stop_pending():
                break
            outcome = self.record_episode()
            outcomes.append(outcome)
            if outcome.outcome == STOP:
                break
        return outcomes


class KeyboardControls:
    """s success, f failure, r re-record, q stop: read from the terminal on a thread."""

    KEYS = {"s": "success", "f": "failure", "r": "rerecord", "q": "stop"}

    def __init__(self, session: TeleopSession):
        self.session = session
        self._thread: threading.Thread | None = None
        self._saved = None

    def start(self) -> bool:
        """Listen if stdin is a terminal; returns whether it does."""
        if not sys.stdin.isatty():
            return False
        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._listen, name="keyboard", daemon=True)
        self._thread.start()
        return True

    def _listen(self) -> None:
        while True:
            key = sys.stdin.read(1).lower()
            if key in self.KEYS:
                getattr(self.session, self.KEYS[key])()

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
