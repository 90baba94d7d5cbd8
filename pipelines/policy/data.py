"""The policy's training data: episodes in memory, chunk targets, prompts, data types (pure).

* **Frames** of a worker's episodes live in one `FrameStore`: images at the model's size
  (uint8), state, action, task_index, data type, `next.reward` / `next.done` and an optional
  advantage column, concatenated, with each frame's episode bounds, so a batch is a few
  vectorized gathers.
* **Chunk targets** follow LeRobot's delta timestamps: the action feature is queried at
  `[i / fps for i in range(chunk_size)]` seconds from the frame; a query past the episode's last
  frame is clamped to it and flagged in `action_is_pad`, and the loss ignores flagged steps.
* **Next frame** (for the IQL backup): the frame after, clamped to the episode's last frame
  (there `next.done` is true, so the clamped frame never enters the target).
* **Prompts**: `tasks[task_index]`, as kai0's PromptFromLeRobotTask does. Plain BC
  (`conditioning="none"`) sees the bare task text (the ", Advantage: ..." suffix removed);
  AWBC sees the labeled text, and with `indicator_dropout` p the bare text instead with
  probability p (RECAP), which also trains the unconditional policy that classifier-free
  guidance needs.
* **Data types** (`demo` / `auto` / `intervention`): a loss weight per type, and optionally
  sampling that gives every type the same share of the batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipelines.dataset import column_to_numpy, parquet_column_names
from pipelines.labeling.advantage import base_task
from pipelines.vision.images import resize

DATA_TYPES = ("demo", "auto", "intervention")
DEFAULT_DATA_TYPE_WEIGHTS = "demo=1,auto=1,intervention=2"
_LABEL = re.compile(r", Advantage: (negative|positive|-?\d+)$")


# --------------------------------------------------------------------------- chunk targets


def delta_timestamps(chunk_size: int, fps: float) -> list[float]:
    """LeRobot's `delta_timestamps["action"]` for a chunk: the next `chunk_size` frames."""
    return [i / fps for i in range(chunk_size)]


def chunk_indices(
    frames: np.ndarray, episode_end: np.ndarray, deltas: list[float], fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(indices B x H, is_pad B x H) of the frames a chunk queries.

    `frames`: global frame indices (B); `episode_end`: the global index of each one's episode's
    last frame. A query beyond it is clamped to it and padded (LeRobot's `action_is_pad`).
    """
    offsets = np.rint(np.asarray(deltas, dtype=np.float64) * fps).astype(np.int64)
    wanted = np.asarray(frames, dtype=np.int64)[:, None] + offsets[None, :]
    end = np.asarray(episode_end, dtype=np.int64)[:, None]
    return np.minimum(wanted, end), wanted > end


def next_frames(frames: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
    """The frame after each frame, clamped to its episode's last frame."""
    return np.minimum(np.asarray(frames) + 1, np.asarray(episode_end))


STD_FLOOR = 1e-2  # in the dataset's units: a constant dimension must not divide by ~0


def normalization_stats(
    states: list[np.ndarray], actions: list[np.ndarray], chunk_size: int, action_frame: str
) -> dict:
    """Mean and std of the state (D) and of the chunk targets (H x A) over episodes.

    The targets are the actions `i` frames ahead (clamped at the episode end, as the training
    targets are), minus the current state for `action_frame="relative"`: a step further ahead
    moves further, so each chunk step gets its own statistics. For "absolute" every step has
    the action's own statistics.
    """
    state = np.concatenate(states).astype(np.float64)
    out = {"state": {"mean": state.mean(0), "std": np.maximum(state.std(0), STD_FLOOR)}}
    if action_frame == "absolute":
        action = np.concatenate(actions).astype(np.float64)
        mean, std = action.mean(0), action.std(0)
        out["action"] = {
            "mean": np.tile(mean, (chunk_size, 1)),
            "std": np.tile(std, (chunk_size, 1)),
        }
    else:
        total = np.zeros((chunk_size, actions[0].shape[1]))
        square = np.zeros_like(total)
        count = 0
        for s, a in zip(states, actions, strict=True):
            n = len(a)
            idx = np.minimum(np.arange(n)[:, None] + np.arange(chunk_size)[None, :], n - 1)
            rel = a[idx].astype(np.float64) - s[:, None, :].astype(np.float64)
            total += rel.sum(0)
            square += (rel * rel).sum(0)
            count += n
        mean = total / count
        out["action"] = {"mean": mean, "std": np.sqrt(np.maximum(square / count - mean**2, 0.0))}
    out["action"]["std"] = np.maximum(out["action"]["std"], STD_FLOOR)
    return {k: {m: v.tolist() for m, v in d.items()} for k, d in out.items()}


# --------------------------------------------------------------------------- prompts


def label_of(text: str) -> str | None:
    """The advantage label of a task text ('positive', 'negative', '3'), or None."""
    m = _LABEL.search(text)
    return m.group(1) if m else None


@dataclass
class PromptTable:
    """Every prompt a task_index can give, as rows of one text list.

    `labeled[t]` / `bare[t]`: the row of task_index t's labeled text and of its bare task.
    `top[t]`: whether t carries the top label (positive; the highest slice for n_slices).
    """

    texts: list[str]
    labeled: np.ndarray
    bare: np.ndarray
    top: np.ndarray

    @classmethod
    def from_tasks(cls, tasks: dict[int, str]) -> PromptTable:
        size = max(tasks) + 1 if tasks else 0
        texts: list[str] = []

        def row(text: str) -> int:
            if text not in texts:
                texts.append(text)
            return texts.index(text)

        labeled = np.zeros(size, dtype=np.int64)
        bare = np.zeros(size, dtype=np.int64)
        top = np.zeros(size, dtype=bool)
        slices = [int(lab) for t in tasks.values() if (lab := label_of(t)) and lab[-1].isdigit()]
        highest = max(slices) if slices else None
        for t, text in sorted(tasks.items()):
            labeled[t] = row(text)
            bare[t] = row(base_task(text))
            lab = label_of(text)
            top[t] = lab == "positive" or (highest is not None and lab == str(highest))
        return cls(texts, labeled, bare, top)

    def to_dict(self) -> dict:
        """JSON-able (checkpoint metadata, Ray Train's loop config)."""
        return {
            "texts": list(self.texts),
            "labeled": self.labeled.tolist(),
            "bare": self.bare.tolist(),
            "top": self.top.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PromptTable:
        return cls(
            list(d["texts"]),
            np.asarray(d["labeled"], dtype=np.int64),
            np.asarray(d["bare"], dtype=np.int64),
            np.asarray(d["top"], dtype=bool),
        )


def prompt_rows(
    task_index: np.ndarray,
    table: PromptTable,
    conditioning: str,
    indicator_dropout: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The prompt row of each frame: labeled (AWBC) or bare (BC, and AWBC's dropped labels)."""
    task_index = np.asarray(task_index)
    if conditioning == "none":
        return table.bare[task_index]
    drop = rng.random(len(task_index)) < indicator_dropout
    return np.where(drop, table.bare[task_index], table.labeled[task_index])


# --------------------------------------------------------------------------- data types


def parse_data_type_weights(text: str) -> dict[str, float]:
    """'demo=1,auto=1,intervention=2' -> {'demo': 1.0, ...}; types not named weigh 1.

    A ValueError names what is wrong (unknown type, not a number, negative).
    """
    weights = dict.fromkeys(DATA_TYPES, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in DATA_TYPES:
            raise ValueError(f"{part!r} is not <type>=<weight> with a type in {DATA_TYPES}")
        try:
            w = float(value)
        except ValueError:
            raise ValueError(f"weight {value.strip()!r} of {name} is not a number") from None
        if not (np.isfinite(w) and w >= 0):
            raise ValueError(f"weight of {name} must be a number >= 0")
        weights[name] = w
    return weights


def data_type_codes(values) -> np.ndarray:
    """data_type strings -> int8 codes (index in DATA_TYPES); -1 for anything else."""
    lookup = {name: i for i, name in enumerate(DATA_TYPES)}
    return np.array([lookup.get(v, -1) for v in values], dtype=np.int8)


def sampling_probabilities(codes: np.ndarray, balance: bool) -> np.ndarray | None:
    """Per-frame sampling probabilities: uniform (None), or each data type an equal share."""
    if not balance:
        return None
    codes = np.asarray(codes)
    kinds, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    p = 1.0 / (counts[inverse] * len(kinds))
    return p / p.sum()


# --------------------------------------------------------------------------- the frames


@dataclass
class FrameStore:
    """A worker's frames, concatenated over its episodes (see the module docstring)."""

    images: np.ndarray  # N x C x S x S x 3 uint8
    state: np.ndarray  # N x D float32
    action: np.ndarray  # N x A float32
    task_index: np.ndarray  # N int64
    data_type: np.ndarray  # N int8 (DATA_TYPES codes)
    reward: np.ndarray  # N float32: next.reward
    done: np.ndarray  # N bool: next.done
    advantage: np.ndarray | None  # N float32: the advantage column, if any
    episode_end: np.ndarray  # N int64: global index of the frame's episode's last frame
    episodes: list[int]
    # seed 000's selection columns (with importance weights): N, N x n x A, N (-1: plain frame)
    propensity: np.ndarray | None = None
    candidates: np.ndarray | None = None
    selected: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.state)

    @classmethod
    def concat(cls, parts: list[dict], episodes: list[int]) -> FrameStore:
        """From per-episode dicts of arrays (keys as the fields, no episode_end)."""
        lengths = np.array([len(p["state"]) for p in parts], dtype=np.int64)
        ends = np.cumsum(lengths) - 1
        episode_end = np.repeat(ends, lengths)

        def cat(key):
            return np.concatenate([p[key] for p in parts]) if parts else np.zeros(0)

        has_adv = bool(parts) and parts[0].get("advantage") is not None
        has_sel = bool(parts) and parts[0].get("propensity") is not None
        return cls(
            images=cat("images"),
            state=cat("state").astype(np.float32),
            action=cat("action").astype(np.float32),
            task_index=cat("task_index").astype(np.int64),
            data_type=cat("data_type").astype(np.int8),
            reward=cat("reward").astype(np.float32),
            done=cat("done").astype(bool),
            advantage=cat("advantage").astype(np.float32) if has_adv else None,
            episode_end=episode_end,
            episodes=list(episodes),
            propensity=cat("propensity").astype(np.float32) if has_sel else None,
            candidates=cat("candidates").astype(np.float32) if has_sel else None,
            selected=cat("selected").astype(np.int64) if has_sel else None,
        )


def vectors(table, name: str) -> np.ndarray:
    """A fixed-size list column (state, action) as an n x D float32 array."""
    col = table.column(name).combine_chunks()
    n = table.num_rows
    values = col.flatten().to_numpy(zero_copy_only=False) if n else np.zeros(0)
    return np.asarray(values, dtype=np.float32).reshape(n, -1)


def load_episode(
    ds,
    episode: int,
    cameras: list[str],
    size: int,
    data_dir: str = "data",
    advantage_column: str | None = None,
    selection: bool = False,
) -> dict[str, np.ndarray]:
    """One episode of a `LeRobotDataset` as FrameStore arrays, cameras at `size` x `size`.

    Columns a dataset may lack get neutral values: data_type "auto" (weight 1), no reward,
    `next.done` on the last frame only. Frames whose `approval_status` is "rejected" (seed 000:
    an attempt that was undone) are left out, before chunks and next frames are built: the
    frame after one shows the same restored state, so dropping it leaves the trajectory that
    was really executed ("approved" and "none" frames stay). `selection` also loads the
    propensity, the candidates and the selected candidate (importance weights).
    """
    present = set(parquet_column_names(ds.data_file(episode, data_dir)))
    wanted = ["observation.state", "action", "task_index"]
    wanted += [
        c for c in ("data_type", "next.reward", "next.done", "approval_status") if c in present
    ]
    if advantage_column:
        wanted.append(advantage_column)
    if selection:
        wanted += ["action_propensity", "candidate_actions", "selected_candidate"]
    table = ds.read_episode(episode, wanted, data_dir)
    n_all = table.num_rows
    keep = np.ones(n_all, dtype=bool)
    if "approval_status" in wanted:
        keep = np.asarray(table["approval_status"].to_pylist(), dtype=object) != "rejected"
        table = table.filter(keep)
    n = table.num_rows
    images = np.empty((n, len(cameras), size, size, 3), dtype=np.uint8)
    kept = np.cumsum(keep) - 1
    for c, key in enumerate(cameras):
        for i, frame in enumerate(ds.iter_camera_frames(episode, key, data_dir)):
            if keep[i]:
                images[kept[i], c] = resize(frame, size)
    done = np.zeros(n, dtype=bool)
    if n:
        done[-1] = True
    extra = {}
    if selection:
        cand = table.column("candidate_actions").combine_chunks().flatten().flatten()
        extra = {
            "propensity": column_to_numpy(table, "action_propensity").reshape(n),
            "candidates": np.asarray(cand.to_numpy(zero_copy_only=False), np.float32).reshape(
                n, -1, vectors(table, "action").shape[1]
            ),
            "selected": column_to_numpy(table, "selected_candidate").reshape(n),
        }
    return {
        **extra,
        "images": images,
        "state": vectors(table, "observation.state"),
        "action": vectors(table, "action"),
        "task_index": column_to_numpy(table, "task_index").reshape(n),
        "data_type": data_type_codes(table["data_type"].to_pylist())
        if "data_type" in wanted
        else np.full(n, DATA_TYPES.index("auto"), np.int8),
        "reward": column_to_numpy(table, "next.reward").reshape(n)
        if "next.reward" in wanted
        else np.zeros(n, np.float32),
        "done": column_to_numpy(table, "next.done").reshape(n) if "next.done" in wanted else done,
        "advantage": column_to_numpy(table, advantage_column).reshape(n)
        if advantage_column
        else None,
    }
