"""HIL-SERL's replay buffers: whole episodes in a ring of frames, n-step sampling, durable segments.

**Layout.** A buffer is a ring of `capacity` *frames*. An episode of T transitions is written as
T + 1 consecutive frames: its T observations, each with the action taken there, the reward
that followed, whether that step ended the episode for real (`terminal`) and the intervention
and demo flags, then its final observation (`last`: no action is taken from it). A transition's
next state is the next frame, so no observation is stored twice (LeRobot's buffers keep
`next_state` beside `state`: twice the memory). Images stay uint8 as the cameras gave them (or,
with a frozen encoder, only its features are kept, float16). A ring of C frames holds
C - (episodes in it) transitions: with ~50-step episodes, 98 % of C.

**Sampling.** Uniform over frames that start a transition. The n-step target of frame i sums
`gamma^k r_{i+k}` for k < n, stopping early at a true terminal (no bootstrap: discount 0) or at
the episode's final frame (a time limit or a stopped collector: truncation bootstraps from
that final observation with `gamma^m`, m the steps taken). Episodes are written whole, so a
look-ahead never meets the write position: when the ring overwrites the oldest episode's
first frames, its later frames, final frame included, are still there. Frame stacking looks
back within the episode (the first frame repeats at the start, as DrQ-v2 does), never past an
overwritten frame.

**Persistence.** `save_segment(folder)` writes the frames added since the previous call as one
file (`.npz`, written to a fsynced temporary and renamed; the folder fsynced), and returns the
buffer's manifest: its capacity, the total frames ever written and the segments that still hold
live frames, in order. The manifest goes into the learner's checkpoint, whose atomic
appearance is the commit: `load(folder, manifest)` rebuilds the ring exactly by replaying the
listed segments in order. A kill between two checkpoints loses the frames added since the last
one, nothing else (`actors.hilserl` checkpoints every K transitions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, fsync_path, replace_durably, staging

FRAME_FIELDS = ("action", "reward", "terminal", "last", "intervention", "demo", "pos", "episode")


@dataclass
class Episode:
    """One episode as collectors ship it.

    `obs`: key -> (T + 1, ...) arrays (observations 0..T, the last one the final observation);
    `action` (T, A) float32 in [-1, 1]; `reward` (T,); `terminated`: the last step ended the
    episode for real (success), else it was truncated; `intervention` / `demo` (T,) bool.
    `info`: anything about the episode (collector, success, seed, weights version, ...).
    """

    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminated: bool
    intervention: np.ndarray
    demo: np.ndarray
    info: dict

    def __len__(self) -> int:
        return len(self.action)

    def nbytes(self) -> int:
        arrays = [*self.obs.values(), self.action, self.reward, self.intervention, self.demo]
        return int(sum(a.nbytes for a in arrays))


def nstep_targets(
    reward: np.ndarray,
    terminal: np.ndarray,
    last: np.ndarray,
    start: np.ndarray,
    n: int,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns over a ring of frames (module docstring).

    `reward`, `terminal`, `last`: per-frame arrays of the ring; `start`: frame indices that
    start a transition. Returns (return, bootstrap discount: gamma^m or 0 after a terminal,
    index of the bootstrap frame).
    """
    size = len(reward)
    ret = np.zeros(len(start), dtype=np.float64)
    scale = np.ones(len(start), dtype=np.float64)
    going = np.ones(len(start), dtype=bool)
    alive = np.ones(len(start), dtype=bool)
    nxt = np.asarray(start).copy()
    for _ in range(n):
        j = nxt
        ret += np.where(going, scale * reward[j], 0.0)
        scale = np.where(going, scale * gamma, scale)
        moved = np.where(going, (j + 1) % size, j)
        stop_terminal = going & terminal[j]
        alive &= ~stop_terminal
        going &= ~stop_terminal
        nxt = moved
        going &= ~last[nxt]
    discount = np.where(alive, scale, 0.0)
    return ret.astype(np.float32), discount.astype(np.float32), nxt


def frame_nbytes(obs_spec: dict[str, tuple[tuple[int, ...], str]], action_dim: int) -> int:
    """The bytes one frame of a `ReplayBuffer` takes, without building one: its observation
    keys, its action, reward (float32), four flags (bool), position (int32) and episode id
    (int64). The ring's arrays are allocated lazily, so a buffer too big for the node is only
    found once it fills, hours in: check `capacity * frame_nbytes` before starting."""
    obs = sum(
        int(np.prod(shape, dtype=np.int64)) * np.dtype(d).itemsize for shape, d in obs_spec.values()
    )
    return int(obs + 4 * int(action_dim) + 4 + 4 * 1 + 4 + 8)


class ReplayBuffer:
    """A ring of episode frames (module docstring).

    `obs_spec`: key -> (shape, dtype) of one observation frame.
    """

    def __init__(
        self,
        capacity: int,
        obs_spec: dict[str, tuple[tuple[int, ...], str]],
        action_dim: int,
        frame_stack: int = 1,
    ):
        if capacity < 2:
            raise ValueError("capacity must be at least 2 frames")
        self.capacity = int(capacity)
        self.obs_spec = {k: (tuple(s), np.dtype(d).str) for k, (s, d) in obs_spec.items()}
        self.action_dim = int(action_dim)
        self.frame_stack = int(frame_stack)
        c = self.capacity
        self.obs = {k: np.zeros((c, *s), dtype=d) for k, (s, d) in self.obs_spec.items()}
        self.action = np.zeros((c, action_dim), dtype=np.float32)
        self.reward = np.zeros(c, dtype=np.float32)
        self.terminal = np.zeros(c, dtype=bool)
        self.last = np.ones(c, dtype=bool)  # nothing written: nothing starts a transition
        self.intervention = np.zeros(c, dtype=bool)
        self.demo = np.zeros(c, dtype=bool)
        self.pos = np.zeros(c, dtype=np.int32)  # frame's index in its episode
        self.episode = np.full(c, -1, dtype=np.int64)  # id: serial of the episode's first frame
        self.total = 0  # frames ever written (serials 0 .. total - 1)
        self.transitions_added = 0
        self.episodes_added = 0
        self._segments: list[dict] = []
        self._saved = 0  # serial up to which frames are in segments

    # ------------------------------------------------------------------ size

    @property
    def frames(self) -> int:
        return min(self.total, self.capacity)

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return int((~self.last[: self.frames]).sum())

    def nbytes(self) -> int:
        arrays = [*self.obs.values(), self.action, self.reward, self.terminal, self.last]
        arrays += [self.intervention, self.demo, self.pos, self.episode]
        return int(sum(a.nbytes for a in arrays))

    def bytes_per_frame(self) -> int:
        return self.nbytes() // self.capacity

    # ------------------------------------------------------------------ writing

    def add(self, episode: Episode) -> None:
        t = len(episode)
        if t < 1:
            return
        if t + 1 > self.capacity:
            raise ValueError(f"an episode of {t} steps does not fit a {self.capacity}-frame ring")
        for k in self.obs_spec:
            if episode.obs[k].shape[0] != t + 1:
                raise ValueError(
                    f"episode obs {k!r}: {episode.obs[k].shape[0]} frames, {t + 1} expected"
                )
        idx = (self.total + np.arange(t + 1)) % self.capacity
        for k, (_, dtype) in self.obs_spec.items():
            self.obs[k][idx] = np.asarray(episode.obs[k]).astype(dtype, copy=False)
        steps = idx[:t]
        final = idx[t]
        self.action[steps] = episode.action
        self.action[final] = 0.0
        self.reward[steps] = episode.reward
        self.reward[final] = 0.0
        self.terminal[idx] = False
        if episode.terminated:
            self.terminal[steps[-1]] = True
        self.last[steps] = False
        self.last[final] = True
        self.intervention[steps] = np.asarray(episode.intervention, dtype=bool)
        self.intervention[final] = False
        self.demo[idx] = False
        self.demo[steps] = np.asarray(episode.demo, dtype=bool)
        self.pos[idx] = np.arange(t + 1)
        self.episode[idx] = self.total
        self.total += t + 1
        self.transitions_added += t
        self.episodes_added += 1

    # ------------------------------------------------------------------ sampling

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if len(self) == 0:
            raise ValueError("the buffer holds no transitions")
        frames = self.frames
        out = np.empty(0, dtype=np.int64)
        while len(out) < n:
            draw = rng.integers(0, frames, size=max(2 * (n - len(out)), 8))
            out = np.concatenate([out, draw[~self.last[draw]]])
        return out[:n]

    def stacked(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Observations at frames `index`: key -> (B, frame_stack, ...) (oldest first)."""
        chain = [index]
        for k in range(1, self.frame_stack):
            prev = chain[-1]
            back = (index - k) % self.capacity
            ok = (self.pos[index] >= k) & (self.episode[back] == self.episode[index])
            chain.append(np.where(ok, back, prev))
        order = np.stack(chain[::-1], axis=1)  # B x stack, oldest first
        return {key: arr[order] for key, arr in self.obs.items()}

    def sample(
        self, n: int, rng: np.random.Generator, nstep: int = 3, gamma: float = 0.99
    ) -> dict[str, np.ndarray]:
        """A batch: obs / next_obs (key -> B x stack x ...), action, n-step return, bootstrap
        discount, intervention and demo flags."""
        index = self.sample_indices(n, rng)
        ret, discount, nxt = nstep_targets(
            self.reward, self.terminal, self.last, index, nstep, gamma
        )
        return {
            "obs": self.stacked(index),
            "next_obs": self.stacked(nxt),
            "action": self.action[index],
            "reward": ret,
            "discount": discount,
            "intervention": self.intervention[index],
            "demo": self.demo[index],
        }

    # ------------------------------------------------------------------ persistence

    def _frame_arrays(self, serials: np.ndarray) -> dict[str, np.ndarray]:
        idx = serials % self.capacity
        arrays = {f"obs/{k}": v[idx] for k, v in self.obs.items()}
        for name in FRAME_FIELDS:
            arrays[name] = getattr(self, name)[idx]
        return arrays

    def save_segment(self, folder: str | os.PathLike) -> dict:
        """Write the frames added since the last call; returns the manifest (module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = max(self._saved, self.total - self.capacity)
        if self.total > start:
            name = f"segment_{start:012d}_{self.total:012d}.npz"
            with staging(folder / name, "wb") as (f, tmp):
                np.savez(f, **self._frame_arrays(np.arange(start, self.total)))
            replace_durably(tmp, folder / name)
            self._segments.append({"file": name, "start": start, "end": self.total})
            self._saved = self.total
        oldest = self.total - self.capacity
        self._segments = [s for s in self._segments if s["end"] > oldest]
        return self.manifest()

    def manifest(self) -> dict:
        """What a checkpoint records of the buffer; complete only right after `save_segment`."""
        return {
            "capacity": self.capacity,
            "total": self._saved,
            "transitions_added": self.transitions_added,
            "episodes_added": self.episodes_added,
            "segments": [dict(s) for s in self._segments],
        }

    def load(self, folder: str | os.PathLike, manifest: dict) -> None:
        """Rebuild the ring from the segments a checkpoint's manifest lists."""
        folder = Path(folder)
        if int(manifest["capacity"]) != self.capacity:
            raise DatasetError(
                f"{folder}: replay capacity {manifest['capacity']} (this run: {self.capacity})"
            )
        for seg in manifest["segments"]:
            path = folder / seg["file"]
            try:
                with np.load(path) as data:
                    serials = np.arange(int(seg["start"]), int(seg["end"]))
                    idx = serials % self.capacity
                    for k in self.obs:
                        self.obs[k][idx] = data[f"obs/{k}"]
                    for name in FRAME_FIELDS:
                        getattr(self, name)[idx] = data[name]
            except (OSError, KeyError, ValueError) as e:
                raise DatasetError(f"{path}: unreadable replay segment ({e})") from e
        self.total = int(manifest["total"])
        self._saved = self.total
        self.transitions_added = int(manifest["transitions_added"])
        self.episodes_added = int(manifest["episodes_added"])
        self._segments = [dict(s) for s in manifest["segments"]]


def remove_unlisted_segments(folder: str | os.PathLike, manifests: list[dict]) -> int:
    """Delete segment files no kept checkpoint lists; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    keep = {s["file"] for m in manifests for s in m["segments"]}
    removed = 0
    for path in folder.glob("segment_*.npz"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        fsync_path(folder)
    return removed


def intervention_runs(episode: Episode) -> list[Episode]:
    """Each run of consecutive intervened steps as its own episode (for the offline buffer),
    with the frame after the run as its final observation."""
    flags = np.asarray(episode.intervention, dtype=bool)
    runs = []
    t = len(flags)
    i = 0
    while i < t:
        if not flags[i]:
            i += 1
            continue
        j = i
        while j < t and flags[j]:
            j += 1
        frames = np.arange(i, j + 1)
        runs.append(
            Episode(
                obs={k: v[frames] for k, v in episode.obs.items()},
                action=episode.action[i:j],
                reward=episode.reward[i:j],
                terminated=bool(episode.terminated and j == t),
                intervention=flags[i:j],
                demo=np.asarray(episode.demo, dtype=bool)[i:j],
                info={"from_episode": episode.info.get("seed")},
            )
        )
        i = j
    return runs


def concat_batches(a: dict, b: dict) -> dict:
    """Two sampled batches (`ReplayBuffer.sample`) as one."""
    out = {}
    for k, v in a.items():
        if isinstance(v, dict):
            out[k] = {kk: np.concatenate([vv, b[k][kk]]) for kk, vv in v.items()}
        else:
            out[k] = np.concatenate([v, b[k]])
    return out
