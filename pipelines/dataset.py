"""The LeRobot dataset layer: the one module that knows the on-disk layout.

Reads LeRobot v2.1 (one parquet file per episode, JSON-lines metadata) and v3.0 (multi-episode
parquet files, parquet metadata), writes v2.1. Every write goes to a temporary file in the same
folder and is renamed into place, so a reader (or a rerun after kill -9) sees either the old or
the new file, never a truncated one.

Layout (v2.1)::

    meta/info.json  meta/tasks.jsonl  meta/episodes.jsonl  meta/episodes_stats.jsonl
    <data_dir>/chunk-XXX/episode_XXXXXX.parquet        (data_dir is "data", or e.g. "data_KAI0_100")
    videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4

Layout (v3.0, read only)::

    meta/info.json  meta/tasks.parquet  meta/episodes/chunk-XXX/file-XXX.parquet
    data/chunk-XXX/file-XXX.parquet  videos/<video_key>/chunk-XXX/file-XXX.mp4
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

V21 = "v2.1"
V30 = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

# Columns every LeRobot frame has.
STANDARD_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")

# Columns beyond LeRobot's standard ones that Flywheel reads, writes and validates.
# dtype/shape follow LeRobot's feature convention (shape [1] for scalars).
KNOWN_FEATURES: dict[str, dict] = {
    # Stage-advantage pipeline (seed 004).
    "progress": {"dtype": "float32", "shape": [1], "names": None},
    "stage_progress_gt": {"dtype": "float32", "shape": [1], "names": None},
    "progress_gt": {"dtype": "float32", "shape": [1], "names": None},
    "absolute_advantage": {"dtype": "float32", "shape": [1], "names": None},
    "relative_advantage": {"dtype": "float32", "shape": [1], "names": None},
    "absolute_value": {"dtype": "float32", "shape": [1], "names": None},
    # Action-selection logging (seed 000).
    "action_propensity": {"dtype": "float32", "shape": [1], "names": None},
    "selector_mode": {"dtype": "string", "shape": [1], "names": None},
    "approval_status": {"dtype": "string", "shape": [1], "names": None},
    # RECAP (seed 003) and HIL-SERL (seed 001).
    "data_type": {"dtype": "string", "shape": [1], "names": None},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "complementary_info.is_intervention": {"dtype": "bool", "shape": [1], "names": None},
}

# Closed vocabularies of the string columns above.
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "data_type": frozenset({"demo", "auto", "intervention"}),
    "approval_status": frozenset({"approved", "rejected", "none"}),
    "selector_mode": frozenset({"random", "epsilon_greedy", "learned"}),
}

_TEMP_MARK = ".flywheel-"
_TEMP_RE = re.compile(r"^\..+\.flywheel-[0-9a-f]{32}\.tmp(\.\w+)?$")


class DatasetError(Exception):
    """A problem with a dataset on disk, worded as one line that names the file."""


# --------------------------------------------------------------------------- atomic writes


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}{_TEMP_MARK}{uuid.uuid4().hex}.tmp"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.replace(tmp, path)
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


def temp_path_for(path: str | os.PathLike) -> Path:
    """A temporary sibling of `path` (for writers such as video encoders that need a filename).

    Move it into place with `os.replace`; `remove_stale_temps` deletes leftovers after a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix so that tools that sniff the extension (OpenCV's VideoWriter) still work.
    return path.parent / f".{path.name}{_TEMP_MARK}{uuid.uuid4().hex}.tmp{path.suffix}"


def _discrete_columns(schema: pa.Schema) -> list[str]:
    """Columns of indices, flags and strings: worth dictionary encoding and min/max stats.

    Float data (states, actions, progress) gets neither: pyarrow would try a dictionary,
    overflow it and fall back (slow, no smaller), and its statistics serve no query.
    """
    return [
        f.name
        for f in schema
        if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type) or pa.types.is_string(f.type)
    ]


def write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    """Write a parquet file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        discrete = _discrete_columns(table.schema)
        pq.write_table(
            table, tmp, compression="snappy", use_dictionary=discrete, write_statistics=discrete
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed writer left under `folder`; returns how many."""
    removed = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if _TEMP_RE.match(name):
                os.unlink(os.path.join(dirpath, name))
                removed += 1
    return removed


# --------------------------------------------------------------------------- reading files


def read_columns(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> pa.Table:
    """Read some (or all) columns of one parquet file; a clear DatasetError if it cannot.

    `optional` columns are read when the file has them.
    """
    try:
        pf = pq.ParquetFile(path)
        if columns is not None:
            names = pf.schema_arrow.names
            absent = [c for c in columns if c not in names]
            if absent:
                raise DatasetError(f"{path}: missing column {absent[0]!r}")
            columns = [*columns, *(c for c in optional if c in names and c not in columns)]
        return pf.read(columns=columns, use_threads=False)
    except DatasetError:
        raise
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DatasetError(f"{path}: unreadable parquet file ({_one_line(e)})") from e


def parquet_column_names(path: str | os.PathLike) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except Exception as e:
        raise DatasetError(f"{path}: unreadable parquet file ({_one_line(e)})") from e


def column_to_numpy(table: pa.Table, name: str) -> np.ndarray:
    """A scalar column as a 1-D numpy array (accepts LeRobot's shape-[1] list columns too).

    Nulls become NaN for floats; the caller decides whether that is an error.
    """
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        col = col.flatten()
        if len(col) != table.num_rows:
            raise DatasetError(f"column {name!r} is not a scalar per frame")
    if pa.types.is_floating(col.type):
        return col.to_numpy(zero_copy_only=False)
    if col.null_count:
        raise DatasetError(f"column {name!r} has missing values")
    return col.to_numpy(zero_copy_only=False)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --------------------------------------------------------------------------- videos

# Videos are MPEG-4 Part 2 ("mp4v") in .mp4: the codec every OpenCV wheel can both write and
# read (pip builds of OpenCV have no H.264 or AV1 encoder), and deterministic byte for byte.
VIDEO_CODEC = "mpeg4"
_VIDEO_FOURCC = "mp4v"


class VideoWriter:
    """Write an RGB video atomically: frames go to a temporary file, renamed on `close()`.

    Use as a context manager; on an exception the temporary file is removed and nothing
    appears at `path`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int):
        import cv2

        self._cv2 = cv2
        self.path = Path(path)
        self._tmp = temp_path_for(self.path)
        self._size = (int(width), int(height))
        self._writer = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*_VIDEO_FOURCC), float(fps), self._size
        )
        if not self._writer.isOpened():
            raise DatasetError(f"{self.path}: OpenCV cannot write {_VIDEO_FOURCC} video here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape[1::-1] != self._size or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype}, expected {self._size} uint8 RGB")
        self._writer.write(self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.release()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fourcc_name(cap) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ")
    return text or "unknown"


def iter_video_frames(
    path: str | os.PathLike, start: int = 0, count: int | None = None, codec: str | None = None
):
    """Decode frames `start` .. `start + count - 1` of a video as RGB uint8 arrays, one at a time.

    A video OpenCV cannot open or decode (AV1 on many builds), or one with fewer frames than
    asked for, is a DatasetError naming the file and its codec; never silently fewer frames.
    `codec` is the codec the dataset's metadata names, used in the message.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: missing video")
    cap = cv2.VideoCapture(str(path))
    try:
        what = codec or _fourcc_name(cap)
        if not cap.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video (codec {what})")
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        done = 0
        while count is None or done < count:
            ok, bgr = cap.read()
            if not ok:
                break
            yield bgr[:, :, ::-1]
            done += 1
        if done == 0 and (count is None or count > 0):
            raise DatasetError(f"{path}: OpenCV decoded no frames (codec {what})")
        if count is not None and done < count:
            raise DatasetError(
                f"{path}: decoded {done} of {count} frames from frame {start} (codec {what})"
            )
    finally:
        cap.release()


def read_video(path: str | os.PathLike, codec: str | None = None) -> np.ndarray:
    """All frames of a (short) video as a T x H x W x 3 RGB uint8 array."""
    return np.stack(list(iter_video_frames(path, codec=codec)))


# --------------------------------------------------------------------------- the dataset


def _read_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DatasetError(f"{path}: not valid JSON ({_one_line(e)})") from e


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON ({_one_line(e)})") from e
    return rows


def _ranges(indices: Sequence[int]) -> str:
    """[1,2,3,7] -> '1-3, 7'."""
    out, start, prev = [], None, None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(out)


@dataclass
class MissingReport:
    """What the metadata lists but the folder lacks."""

    meta_files: list[str] = field(default_factory=list)
    data_episodes: list[int] = field(default_factory=list)
    data_examples: list[str] = field(default_factory=list)
    videos: dict[str, list[int]] = field(default_factory=dict)
    video_examples: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.meta_files or self.data_episodes or self.videos or self.notes)

    def lines(self) -> list[str]:
        out = [f"missing metadata file {m}" for m in self.meta_files]
        if self.data_episodes:
            out.append(
                f"data for {len(self.data_episodes)} episode(s) missing "
                f"(episodes {_ranges(self.data_episodes)}; e.g. {self.data_examples[0]})"
            )
        for key, eps in self.videos.items():
            out.append(
                f"video {key} missing for {len(eps)} episode(s) "
                f"(episodes {_ranges(eps)}; e.g. {self.video_examples[key]})"
            )
        out.extend(self.notes)
        return out


class LeRobotDataset:
    """A LeRobot dataset on disk (v2.1 or v3.0), loaded from its metadata.

    Loading never requires the data or video files to exist: `missing()` says which of the
    files the metadata lists are absent, and reads only touch the files they need.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset folder")
        try:
            self.info: dict = _read_json(info_path)
        except FileNotFoundError:
            raise DatasetError(f"{info_path}: missing (not a LeRobot dataset)") from None
        version = str(self.info.get("codebase_version", ""))
        if version.startswith("v2"):
            self.version = V21
        elif version.startswith("v3"):
            self.version = V30
        else:
            raise DatasetError(
                f"{info_path}: codebase_version {version!r} is not supported (v2.1 or v3.0)"
            )
        self.features: dict = self.info.get("features", {})
        self.fps: float = self.info.get("fps", 30)
        self.chunks_size: int = int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
        self._missing_meta: list[str] = []
        if self.version == V21:
            self._load_v21_meta()
        else:
            self._load_v30_meta()

    # ------------------------------------------------------------------ metadata loading

    def _load_v21_meta(self) -> None:
        meta = self.root / "meta"
        self.tasks: dict[int, str] = {}
        if (meta / "tasks.jsonl").exists():
            for row in _read_jsonl(meta / "tasks.jsonl"):
                self.tasks[int(row["task_index"])] = row["task"]
        else:
            self._missing_meta.append("meta/tasks.jsonl")
        self.episodes: dict[int, dict] = {}
        if (meta / "episodes.jsonl").exists():
            for row in _read_jsonl(meta / "episodes.jsonl"):
                self.episodes[int(row["episode_index"])] = row
        else:
            self._missing_meta.append("meta/episodes.jsonl")
        if not (meta / "episodes_stats.jsonl").exists():
            self._missing_meta.append("meta/episodes_stats.jsonl")

    def _load_v30_meta(self) -> None:
        meta = self.root / "meta"
        self.tasks = {}
        tasks_path = meta / "tasks.parquet"
        if tasks_path.exists():
            t = read_columns(tasks_path)
            names = [n for n in t.column_names if n != "task_index"]
            text_col = "task" if "task" in names else (names[0] if names else None)
            if text_col is None:
                raise DatasetError(f"{tasks_path}: no task text column")
            for idx, text in zip(
                t.column("task_index").to_pylist(), t.column(text_col).to_pylist(), strict=True
            ):
                self.tasks[int(idx)] = text
        else:
            self._missing_meta.append("meta/tasks.parquet")
        self.episodes = {}
        ep_files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            self._missing_meta.append("meta/episodes/chunk-*/file-*.parquet")
        keep_prefixes = ("data/", "videos/", "dataset_")
        for path in ep_files:
            t = read_columns(path)
            cols = [
                c
                for c in t.column_names
                if c in ("episode_index", "tasks", "length") or c.startswith(keep_prefixes)
            ]
            for row in t.select(cols).to_pylist():
                self.episodes[int(row["episode_index"])] = row

    @functools.cached_property
    def episodes_stats(self) -> dict[int, dict]:
        """Per-episode stats (v2.1 meta/episodes_stats.jsonl; loaded on first use, it is big)."""
        path = self.root / "meta" / "episodes_stats.jsonl"
        if self.version != V21 or not path.exists():
            return {}
        return {int(row["episode_index"]): row["stats"] for row in _read_jsonl(path)}

    # ------------------------------------------------------------------ layout

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def episode_indices(self) -> list[int]:
        if self.episodes:
            return sorted(self.episodes)
        return list(range(int(self.info.get("total_episodes", 0))))

    def episode_chunk(self, episode_index: int) -> int:
        return episode_index // self.chunks_size

    def data_file(self, episode_index: int, data_dir: str = "data") -> Path:
        """The parquet file that holds `episode_index` (for v3.0 a multi-episode file)."""
        if self.version == V21:
            rel = self.info.get("data_path", V21_DATA_PATH).format(
                episode_chunk=self.episode_chunk(episode_index), episode_index=episode_index
            )
            return self.root / _swap_data_dir(rel, data_dir)
        ep = self._v30_episode(episode_index)
        rel = self.info["data_path"].format(
            chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]
        )
        return self.root / _swap_data_dir(rel, data_dir)

    def video_file(self, episode_index: int, video_key: str) -> Path:
        if self.version == V21:
            rel = self.info.get("video_path") or V21_VIDEO_PATH
            return self.root / rel.format(
                episode_chunk=self.episode_chunk(episode_index),
                episode_index=episode_index,
                video_key=video_key,
            )
        ep = self._v30_episode(episode_index)
        return self.root / self.info["video_path"].format(
            video_key=video_key,
            chunk_index=ep[f"videos/{video_key}/chunk_index"],
            file_index=ep[f"videos/{video_key}/file_index"],
        )

    def video_span(self, episode_index: int, video_key: str) -> tuple[float, float]:
        """(from, to) timestamps of the episode inside its video file (0..length/fps for v2.1)."""
        if self.version == V21:
            return 0.0, self.episode_length(episode_index) / self.fps
        ep = self._v30_episode(episode_index)
        return ep[f"videos/{video_key}/from_timestamp"], ep[f"videos/{video_key}/to_timestamp"]

    def episode_length(self, episode_index: int) -> int:
        ep = self.episodes.get(episode_index)
        if ep is None or "length" not in ep:
            return self.read_episode(episode_index, columns=["frame_index"]).num_rows
        return int(ep["length"])

    def _v30_episode(self, episode_index: int) -> dict:
        try:
            return self.episodes[episode_index]
        except KeyError:
            raise DatasetError(
                f"{self.root}/meta/episodes: episode {episode_index} is not listed"
            ) from None

    def data_files(self, data_dir: str = "data") -> list[Path]:
        """The parquet files present under `<data_dir>/chunk-*/`, sorted by path."""
        return sorted(
            p
            for p in (self.root / data_dir).glob("chunk-*/*.parquet")
            if not p.name.startswith(".")
        )

    def relative(self, path: str | os.PathLike) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    # ------------------------------------------------------------------ reading

    def read_episode(
        self, episode_index: int, columns: Sequence[str] | None = None, data_dir: str = "data"
    ) -> pa.Table:
        path = self.data_file(episode_index, data_dir)
        if not path.exists():
            raise DatasetError(f"{self.relative(path)}: missing (episode {episode_index})")
        if self.version == V21:
            return read_columns(path, columns)
        cols = None if columns is None else list(dict.fromkeys([*columns, "episode_index"]))
        t = read_columns(path, cols)
        mask = pc.equal(t.column("episode_index"), episode_index)
        t = t.filter(mask)
        return t if columns is None else t.select(list(columns))

    def iter_camera_frames(self, episode_index: int, key: str, data_dir: str = "data"):
        """The episode's frames of camera `key`, one RGB uint8 array at a time.

        Video features are decoded with OpenCV as they are read (for v3.0, the episode's span of
        the shared video file); image features (stored in the parquet files as encoded bytes)
        are decoded with cv2.imdecode. A video OpenCV cannot decode is a DatasetError naming the
        file and its codec.
        """
        import cv2

        feature = self.features.get(key)
        if feature is None:
            raise DatasetError(f"{self.root}/meta/info.json: no camera feature {key!r}")
        n = self.episode_length(episode_index)
        if feature.get("dtype") == "video":
            codec = (feature.get("info") or {}).get("video.codec")
            start, _ = self.video_span(episode_index, key)
            first = int(round(start * self.fps))
            yield from iter_video_frames(self.video_file(episode_index, key), first, n, codec=codec)
            return
        column = self.read_episode(episode_index, [key], data_dir).column(key).to_pylist()
        for i, cell in enumerate(column):
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            bgr = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DatasetError(
                    f"{self.relative(self.data_file(episode_index, data_dir))}: episode "
                    f"{episode_index} frame {i}: {key} is not a decodable image"
                )
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @property
    def camera_keys(self) -> list[str]:
        """Every camera feature, video or image, in metadata order."""
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    def missing(self) -> MissingReport:
        """Files the metadata lists that are not in the folder."""
        rep = MissingReport(meta_files=list(self._missing_meta))
        listed = self.episode_indices
        total = self.info.get("total_episodes")
        if total is not None and self.episodes and int(total) != len(self.episodes):
            rep.notes.append(
                f"meta/info.json says total_episodes={total} but the episode metadata "
                f"lists {len(self.episodes)}"
            )
        checked: dict[Path, bool] = {}

        def exists(p: Path) -> bool:
            if p not in checked:
                checked[p] = p.exists()
            return checked[p]

        for ep in listed:
            try:
                p = self.data_file(ep)
            except (KeyError, DatasetError):
                rep.notes.append(f"episode {ep}: metadata does not say where its data is")
                continue
            if not exists(p):
                rep.data_episodes.append(ep)
                if not rep.data_examples:
                    rep.data_examples.append(self.relative(p))
            for key in self.video_keys:
                try:
                    v = self.video_file(ep, key)
                except KeyError:
                    continue
                if not exists(v):
                    rep.videos.setdefault(key, []).append(ep)
                    rep.video_examples.setdefault(key, self.relative(v))
        return rep

    def summary(self) -> str:
        frames = self.info.get("total_frames", "?")
        return (
            f"{self.root}: LeRobot {self.version}, {len(self.episode_indices)} episodes, "
            f"{frames} frames, {len(self.tasks)} task(s), fps {self.fps}, "
            f"cameras {', '.join(self.camera_keys) or 'none'}"
        )


def _swap_data_dir(rel: str, data_dir: str) -> str:
    if data_dir == "data":
        return rel
    head, _, tail = rel.partition("/")
    if head != "data":
        raise DatasetError(f"data_path {rel!r} does not start with data/")
    return f"{data_dir}/{tail}"


# --------------------------------------------------------------------------- writing v2.1


def feature_from_arrow(name: str, typ: pa.DataType) -> dict:
    """The LeRobot feature entry for a column of an Arrow table."""
    if name in KNOWN_FEATURES:
        return dict(KNOWN_FEATURES[name])
    shape = [1]
    if pa.types.is_fixed_size_list(typ):
        shape = [typ.list_size]
        typ = typ.value_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        dtype = "string"
    elif pa.types.is_boolean(typ):
        dtype = "bool"
    else:
        dtype = typ.to_pandas_dtype().__name__
    return {"dtype": dtype, "shape": shape, "names": None}


def _arrow_type(feature: dict) -> pa.DataType:
    dtype = feature["dtype"]
    base = {"string": pa.string(), "bool": pa.bool_()}.get(dtype) or pa.from_numpy_dtype(
        np.dtype(dtype)
    )
    shape = list(feature.get("shape") or [1])
    if shape == [1]:
        return base
    if len(shape) != 1:
        raise DatasetError(f"feature shape {shape} is not supported in parquet columns")
    return pa.list_(base, shape[0])


def frames_table(columns: dict[str, object], features: dict[str, dict] | None = None) -> pa.Table:
    """Build an episode table from numpy arrays / lists, typed by LeRobot feature specs.

    `features` gives dtype/shape per column (KNOWN_FEATURES and the standard columns are
    known already); 2-D float arrays become fixed-size list columns as LeRobot stores them.
    String columns with a closed vocabulary (data_type, approval_status, selector_mode) are
    checked against it.
    """
    features = features or {}
    arrays, names = [], []
    for name, values in columns.items():
        feat = features.get(name) or KNOWN_FEATURES.get(name)
        if name in ALLOWED_VALUES:
            bad = set(map(str, values)) - ALLOWED_VALUES[name]
            if bad:
                raise DatasetError(
                    f"column {name!r}: value {sorted(bad)[0]!r} is not one of "
                    f"{sorted(ALLOWED_VALUES[name])}"
                )
        arr = np.asarray(values)
        if feat is None:
            if arr.ndim == 2:
                feat = {"dtype": str(arr.dtype), "shape": [arr.shape[1]]}
            elif name in ("frame_index", "episode_index", "index", "task_index"):
                feat = {"dtype": "int64", "shape": [1]}
            elif name == "timestamp":
                feat = {"dtype": "float32", "shape": [1]}
            elif arr.dtype.kind in "US":
                feat = {"dtype": "string", "shape": [1]}
            else:
                feat = {"dtype": str(arr.dtype), "shape": [1]}
        typ = _arrow_type(feat)
        if pa.types.is_fixed_size_list(typ):
            flat = np.ascontiguousarray(arr, dtype=typ.value_type.to_pandas_dtype()).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), typ.list_size))
        elif pa.types.is_string(typ):
            arrays.append(pa.array([str(v) for v in values], type=typ))
        else:
            arrays.append(pa.array(arr.astype(typ.to_pandas_dtype(), copy=False), type=typ))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def features_of(table: pa.Table, videos: dict[str, dict] | None = None) -> dict[str, dict]:
    """info.json `features` for an episode table plus video features."""
    feats = {f.name: feature_from_arrow(f.name, f.type) for f in table.schema}
    for key, vfeat in (videos or {}).items():
        feats[key] = vfeat
    return feats


def video_feature(height: int, width: int, fps: float, codec: str) -> dict:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }


def numeric_stats(values: np.ndarray) -> dict:
    """LeRobot v2.1 per-episode stats of one feature (values: frames x dims)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    return {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [int(v.shape[0])],
    }


def table_stats(table: pa.Table) -> dict[str, dict]:
    """Stats of every numeric/bool column of an episode table (strings are skipped)."""
    stats = {}
    for f in table.schema:
        typ = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
            continue
        col = table.column(f.name).combine_chunks()
        if pa.types.is_fixed_size_list(f.type):
            arr = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), f.type.list_size)
        else:
            arr = col.to_numpy(zero_copy_only=False)
        if len(arr):
            stats[f.name] = numeric_stats(arr.astype(np.float64))
    return stats


class ImageStats:
    """Per-channel stats of a camera's frames, as LeRobot keeps them (values in [0, 1])."""

    def __init__(self):
        self.count = 0
        self._sum = np.zeros(3)
        self._sq = np.zeros(3)
        self._lo = np.full(3, 255.0)
        self._hi = np.zeros(3)

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        pixels = rgb.shape[0] * rgb.shape[1]
        mean, std = cv2.meanStdDev(rgb)  # in C++: numpy's reductions cost 50x more here
        self._sum += mean[:, 0] * pixels
        self._sq += (std[:, 0] ** 2 + mean[:, 0] ** 2) * pixels
        for c, channel in enumerate(cv2.split(rgb)):
            lo, hi, _, _ = cv2.minMaxLoc(channel)
            self._lo[c], self._hi[c] = min(self._lo[c], lo), max(self._hi[c], hi)
        self.count += pixels

    def result(self) -> dict:
        mean = self._sum / max(self.count, 1)
        std = np.sqrt(np.maximum(self._sq / max(self.count, 1) - mean**2, 0.0))

        def shape(v):  # LeRobot's C x 1 x 1
            return [[[float(x) / 255.0]] for x in v]

        return {
            "min": shape(self._lo),
            "max": shape(self._hi),
            "mean": shape(mean),
            "std": shape(std),
            "count": [self.count],
        }


def episode_data_path(
    root: str | os.PathLike,
    episode_index: int,
    data_dir: str = "data",
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
) -> Path:
    """Where a new v2.1 dataset keeps an episode's parquet file."""
    rel = V21_DATA_PATH.format(
        episode_chunk=episode_index // chunks_size, episode_index=episode_index
    )
    return Path(root) / _swap_data_dir(rel, data_dir)


def episode_video_path(
    root: str | os.PathLike,
    episode_index: int,
    video_key: str,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
) -> Path:
    """Where a new v2.1 dataset keeps an episode's video for one camera."""
    return Path(root) / V21_VIDEO_PATH.format(
        episode_chunk=episode_index // chunks_size,
        episode_index=episode_index,
        video_key=video_key,
    )


def new_info(
    *,
    fps: float,
    features: dict[str, dict],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    robot_type: str | None = None,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
) -> dict:
    n_videos = sum(1 for f in features.values() if f.get("dtype") == "video")
    return {
        "codebase_version": V21,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "total_videos": n_videos * total_episodes,
        "total_chunks": (max(total_episodes - 1, 0) // chunks_size) + 1,
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": V21_DATA_PATH,
        "video_path": V21_VIDEO_PATH if n_videos else None,
        "features": features,
    }


def write_meta(
    root: str | os.PathLike,
    *,
    info: dict,
    tasks: dict[int, str] | None = None,
    episodes: Sequence[dict] | None = None,
    episodes_stats: dict[int, dict] | None = None,
) -> None:
    """Write v2.1 metadata files, each atomically; info.json last (it is what readers open first).

    Only the parts given are written, so a job that changes tasks and episodes leaves
    episodes_stats.jsonl alone unless it passes it.
    """
    meta = Path(root) / "meta"
    if tasks is not None:
        atomic_write_jsonl(
            meta / "tasks.jsonl",
            ({"task_index": i, "task": t} for i, t in sorted(tasks.items())),
        )
    if episodes is not None:
        atomic_write_jsonl(
            meta / "episodes.jsonl", sorted(episodes, key=lambda e: e["episode_index"])
        )
    if episodes_stats is not None:
        atomic_write_jsonl(
            meta / "episodes_stats.jsonl",
            ({"episode_index": i, "stats": s} for i, s in sorted(episodes_stats.items())),
        )
    atomic_write_json(meta / "info.json", info)


_EPISODE_INDEX_RE = re.compile(r'^\{"episode_index":\s*(-?\d+)')


def update_episode_stats(
    root: str | os.PathLike, feature: str, per_episode: dict[int, dict]
) -> int:
    """Replace one feature's stats in v2.1 meta/episodes_stats.jsonl, episode by episode.

    The file holds stats of every feature (megabytes for thousands of episodes); lines are
    rewritten textually where the feature's flat stats object can be swapped in place, and
    parsed otherwise. Episodes without a line, or whose line lacks the feature, are left as
    they are. Written atomically; returns how many episodes were updated.
    """
    path = Path(root) / "meta" / "episodes_stats.jsonl"
    if not path.exists():
        return 0
    pattern = re.compile(r'("' + re.escape(feature) + r'":\s*)\{[^{}]*\}')
    updated = 0
    with open(path, encoding="utf-8") as f, atomic_open(path) as out:
        for line in f:
            m = _EPISODE_INDEX_RE.match(line)
            ep = int(m.group(1)) if m else None
            if ep is None:
                try:
                    ep = int(json.loads(line)["episode_index"]) if line.strip() else None
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    ep = None
            new = per_episode.get(ep) if ep is not None else None
            if new is not None:
                text = json.dumps(new)
                line, n = pattern.subn(lambda m, t=text: m.group(1) + t, line, count=1)
                if n == 0:
                    row = json.loads(line)
                    if feature in row.get("stats", {}):
                        row["stats"][feature] = new
                        line = json.dumps(row) + "\n"
                        n = 1
                updated += n
            out.write(line if line.endswith("\n") else line + "\n")
    return updated


class EpisodeRecorder:
    """Record episodes frame by frame into a LeRobot v2.1 dataset (new, or appended to).

    `begin()` starts an episode (its camera videos are written as frames arrive); `add()`
    buffers a frame; `save()` writes the episode's parquet, finishes its videos and rewrites the
    metadata, each atomically, so the dataset on disk is always complete: the episode being
    recorded only appears once saved. `discard()` drops it (re-record).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        fps: float,
        task: str,
        joint_names: Sequence[str],
        cameras: dict[str, tuple[int, int]],
        robot_type: str = "so101_follower",
        data_type: str = "demo",
    ):
        self.root = Path(root)
        self.fps = fps
        self.task = task
        self.cameras = dict(cameras)  # key -> (height, width)
        self.data_type = data_type
        names = [f"{j}.pos" for j in joint_names]
        self._vector = {"dtype": "float32", "shape": [len(names)], "names": names}
        self._episodes: list[dict] = []
        self._stats: dict[int, dict] = {}
        self._tasks: dict[int, str] = {}
        self.info: dict | None = None
        self.robot_type = robot_type
        self.chunks_size = DEFAULT_CHUNKS_SIZE
        if (self.root / "meta" / "info.json").exists():
            self._continue()
        elif self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(f"{self.root}: exists, is not empty and is not a LeRobot dataset")
        self._frames: list[tuple] = []
        self._videos: dict[str, VideoWriter] = {}
        self._image_stats: dict[str, ImageStats] = {}
        self.episode_index: int | None = None

    def _continue(self) -> None:
        ds = LeRobotDataset(self.root)
        if ds.version != V21:
            raise DatasetError(f"{self.root}: LeRobot {ds.version}; recording appends to v2.1")
        if ds.fps != self.fps:
            raise DatasetError(f"{self.root}/meta/info.json: fps {ds.fps}, recording at {self.fps}")
        want = {
            k: (f["shape"][0], f["shape"][1])
            for k, f in ds.features.items()
            if f.get("dtype") == "video"
        }
        if want != self.cameras:
            raise DatasetError(
                f"{self.root}/meta/info.json: cameras {want}, recording {self.cameras}"
            )
        self.info = ds.info
        self.chunks_size = ds.chunks_size
        self._tasks = dict(ds.tasks)
        self._episodes = [ds.episodes[e] for e in sorted(ds.episodes)]
        self._stats = dict(ds.episodes_stats)

    @property
    def total_frames(self) -> int:
        return sum(int(e["length"]) for e in self._episodes)

    def begin(self) -> int:
        if self.episode_index is not None:
            raise RuntimeError("an episode is being recorded: save() or discard() it first")
        self.episode_index = len(self._episodes)
        self._frames = []
        self._videos = {
            key: VideoWriter(
                episode_video_path(self.root, self.episode_index, key, self.chunks_size),
                self.fps,
                w,
                h,
            )
            for key, (h, w) in self.cameras.items()
        }
        self._image_stats = {key: ImageStats() for key in self.cameras}
        return self.episode_index

    def add(
        self,
        state: np.ndarray,
        action: np.ndarray,
        images: dict[str, np.ndarray],
        intervention: bool = False,
    ) -> None:
        for key, writer in self._videos.items():
            writer.write(images[key])
            self._image_stats[key].add(images[key])
        self._frames.append(
            (np.asarray(state, np.float32), np.asarray(action, np.float32), bool(intervention))
        )

    def discard(self) -> None:
        for writer in self._videos.values():
            writer.abort()
        self._videos, self._frames, self.episode_index = {}, [], None

    def save(self, success: bool) -> dict:
        """Write the episode; `success` puts reward 1.0 on its last frame."""
        if self.episode_index is None or not self._frames:
            raise RuntimeError("no frames to save")
        ep, n = self.episode_index, len(self._frames)
        if self.task not in self._tasks.values():
            self._tasks[len(self._tasks)] = self.task
        task_index = next(i for i, t in self._tasks.items() if t == self.task)
        reward = np.zeros(n, np.float32)
        done = np.zeros(n, bool)
        done[-1] = True
        if success:
            reward[-1] = 1.0
        interv = np.array([f[2] for f in self._frames])
        first = self.total_frames
        table = frames_table(
            {
                "observation.state": np.stack([f[0] for f in self._frames]),
                "action": np.stack([f[1] for f in self._frames]),
                "timestamp": np.arange(n, dtype=np.float32) / np.float32(self.fps),
                "frame_index": np.arange(n),
                "episode_index": np.full(n, ep),
                "index": np.arange(first, first + n),
                "task_index": np.full(n, task_index),
                "next.reward": reward,
                "next.done": done,
                "data_type": np.where(interv, "intervention", self.data_type).astype(object),
                "complementary_info.is_intervention": interv,
            },
            {"observation.state": self._vector, "action": self._vector},
        )
        write_parquet(episode_data_path(self.root, ep, chunks_size=self.chunks_size), table)
        for writer in self._videos.values():
            writer.close()
        stats = table_stats(table)
        stats.update({key: acc.result() for key, acc in self._image_stats.items()})
        self._stats[ep] = stats
        self._episodes.append({"episode_index": ep, "tasks": [self.task], "length": n})
        if self.info is None:
            videos = {
                k: video_feature(h, w, self.fps, VIDEO_CODEC) for k, (h, w) in self.cameras.items()
            }
            features = features_of(table, videos)
            features["observation.state"] = features["action"] = dict(self._vector)
            self.info = new_info(
                fps=self.fps,
                features=features,
                total_episodes=0,
                total_frames=0,
                total_tasks=0,
                robot_type=self.robot_type,
            )
        n_eps = len(self._episodes)
        n_videos = len(self.cameras)
        self.info.update(
            total_episodes=n_eps,
            total_frames=self.total_frames,
            total_tasks=len(self._tasks),
            total_videos=n_videos * n_eps,
            total_chunks=(n_eps - 1) // DEFAULT_CHUNKS_SIZE + 1,
            splits={"train": f"0:{n_eps}"},
        )
        write_meta(
            self.root,
            info=self.info,
            tasks=self._tasks,
            episodes=self._episodes,
            episodes_stats=self._stats,
        )
        self._videos, self._frames, self.episode_index = {}, [], None
        return {"episode_index": ep, "length": n, "success": success}
