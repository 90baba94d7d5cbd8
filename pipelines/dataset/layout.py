"""The on-disk layout of LeRobot v2.1 and v3.0 datasets: paths, metadata, `LeRobotDataset`.

Layout (v2.1)::

    meta/info.json  meta/tasks.jsonl  meta/episodes.jsonl  meta/episodes_stats.jsonl
    <data_dir>/chunk-XXX/episode_XXXXXX.parquet        (data_dir is "data", or e.g. "data_KAI0_100")
    videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4

Layout (v3.0)::

    meta/info.json  meta/stats.json  meta/tasks.parquet  meta/episodes/chunk-XXX/file-XXX.parquet
    <data_dir>/chunk-XXX/file-XXX.parquet  videos/<video_key>/chunk-XXX/file-XXX.mp4
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipelines.dataset import metadata
from pipelines.dataset.atomic import JOURNAL, commit_staged, stage_json, stage_jsonl, staging
from pipelines.dataset.errors import DatasetError, one_line
from pipelines.dataset.lock import exclusive_writer, finish_commit_on_load
from pipelines.dataset.tables import read_columns
from pipelines.dataset.video import iter_video_frames

V21 = "v2.1"
V30 = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


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
        if (self.root / JOURNAL).exists():  # an unfinished commit: finish it, or refuse
            finish_commit_on_load(self.root)
        try:
            self.info: dict = metadata.read_json(info_path)
        except FileNotFoundError:
            raise DatasetError(f"{info_path}: missing (not a LeRobot dataset)") from None
        if not isinstance(self.info, dict):
            raise DatasetError(f"{info_path}: a {type(self.info).__name__}, not a JSON object")
        version = str(self.info.get("codebase_version", ""))
        if version.startswith("v2"):
            self.version = V21
        elif version.startswith("v3"):
            self.version = V30
        else:
            raise DatasetError(
                f"{info_path}: codebase_version {version!r} is not supported (v2.1 or v3.0)"
            )
        self.features: dict = metadata.check_info(info_path, self.info, self.version)
        self.fps: float = self.info.get("fps", 30)
        self.chunks_size: int = int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
        self._missing_meta: list[str] = []
        if self.version == V21:
            self._load_v21_meta()
        else:
            self._load_v30_meta()
        if not self.episodes:  # episode_indices falls back on total_episodes: bound it
            metadata.bound_total_episodes(
                info_path,
                self.total_episodes,
                len(self.data_files()),
                self.chunks_size,
            )

    # ------------------------------------------------------------------ metadata loading

    def _load_v21_meta(self) -> None:
        meta = self.root / "meta"
        self.tasks: dict[int, str] = {}
        if (meta / "tasks.jsonl").exists():
            self.tasks = metadata.v21_tasks(meta / "tasks.jsonl")
        else:
            self._missing_meta.append("meta/tasks.jsonl")
        self.episodes: dict[int, dict] = {}
        if (meta / "episodes.jsonl").exists():
            self.episodes = metadata.v21_episodes(meta / "episodes.jsonl")
        else:
            self._missing_meta.append("meta/episodes.jsonl")
        if not (meta / "episodes_stats.jsonl").exists():
            self._missing_meta.append("meta/episodes_stats.jsonl")

    def _load_v30_meta(self) -> None:
        meta = self.root / "meta"
        self.tasks = {}
        tasks_path = meta / "tasks.parquet"
        if tasks_path.exists():
            self.tasks = metadata.v30_tasks(tasks_path, read_columns(tasks_path))
        else:
            self._missing_meta.append("meta/tasks.parquet")
        self.episodes = {}
        ep_files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            self._missing_meta.append("meta/episodes/chunk-*/file-*.parquet")
        for path in ep_files:
            self.episodes.update(metadata.v30_episodes(path, read_columns(path)))

    @functools.cached_property
    def episodes_stats(self) -> dict[int, dict]:
        """Per-episode stats (v2.1 meta/episodes_stats.jsonl; loaded on first use, it is big)."""
        path = self.root / "meta" / "episodes_stats.jsonl"
        if self.version != V21 or not path.exists():
            return {}
        return metadata.v21_episodes_stats(path)

    # ------------------------------------------------------------------ layout

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def episode_indices(self) -> list[int]:
        if self.episodes:
            return sorted(self.episodes)
        return list(range(self.total_episodes))

    @property
    def total_episodes(self) -> int:
        """info.json's `total_episodes` (0 when absent; checked on loading)."""
        return metadata.total_episodes(self.meta_dir / "info.json", self.info)

    def episode_chunk(self, episode_index: int) -> int:
        return episode_index // self.chunks_size

    def data_file(self, episode_index: int, data_dir: str = "data") -> Path:
        """The parquet file that holds `episode_index` (for v3.0 a multi-episode file)."""
        if self.version == V21:
            rel = self._fill(
                "data_path",
                self.info.get("data_path") or V21_DATA_PATH,
                episode_chunk=self.episode_chunk(episode_index),
                episode_index=episode_index,
            )
            return self.root / _swap_data_dir(rel, data_dir)
        ep = self._v30_episode(episode_index)
        rel = self._fill(
            "data_path",
            self.info["data_path"],
            chunk_index=ep["data/chunk_index"],
            file_index=ep["data/file_index"],
        )
        return self.root / _swap_data_dir(rel, data_dir)

    def video_file(self, episode_index: int, video_key: str) -> Path:
        if self.version == V21:
            return self.root / self._fill(
                "video_path",
                self.info.get("video_path") or V21_VIDEO_PATH,
                episode_chunk=self.episode_chunk(episode_index),
                episode_index=episode_index,
                video_key=video_key,
            )
        ep = self._v30_episode(episode_index)
        return self.root / self._fill(
            "video_path",
            self.info["video_path"],
            video_key=video_key,
            chunk_index=ep[f"videos/{video_key}/chunk_index"],
            file_index=ep[f"videos/{video_key}/file_index"],
        )

    def _fill(self, name: str, template: str, **fields) -> str:
        """A path template (checked on loading) filled in; DatasetError for bad values."""
        try:
            return template.format(**fields)
        except (ValueError, TypeError) as e:
            raise DatasetError(
                f"{self.root}/meta: {name} {template!r} with {fields}: {one_line(e)}"
            ) from e

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

    def episode_outcome(self, episode_index: int) -> bool | None:
        """The episode's outcome, its `episode_success` (None where the metadata has none)."""
        return (self.episodes.get(episode_index) or {}).get(metadata.EPISODE_SUCCESS)

    @property
    def outcomes(self) -> dict[int, bool | None]:
        """Every listed episode's outcome (`episode_outcome`), by episode index."""
        return {ep: self.episode_outcome(ep) for ep in self.episode_indices}

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

        Video features are decoded with PyAV as they are read, as LeRobot reads them: the
        frames at the episode's `from_timestamp` (v3.0: its span of the shared video file;
        v2.1: 0) + i / fps. Image features (stored in the parquet files as PNG or JPEG bytes)
        are decoded with Pillow. A video that cannot be decoded here, or that has fewer frames
        than the episode's rows, is a DatasetError naming the file and its codec.
        """
        feature = self.features.get(key)
        if feature is None:
            raise DatasetError(f"{self.root}/meta/info.json: no camera feature {key!r}")
        n = self.episode_length(episode_index)
        if feature.get("dtype") == "video":
            codec = (feature.get("info") or {}).get("video.codec")
            start, _ = self.video_span(episode_index, key)
            yield from iter_video_frames(
                self.video_file(episode_index, key),
                count=n,
                codec=codec,
                from_timestamp=float(start),
                fps=self.fps,
            )
            return
        column = self.read_episode(episode_index, [key], data_dir).column(key).to_pylist()
        for i, cell in enumerate(column):
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            try:
                with Image.open(io.BytesIO(data or b"")) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                # PIL.UnidentifiedImageError is an OSError; a bomb is refused before decoding
                raise DatasetError(
                    f"{self.relative(self.data_file(episode_index, data_dir))}: episode "
                    f"{episode_index} frame {i}: {key} is not a decodable image ({one_line(e)})"
                ) from e
            yield rgb

    @property
    def camera_keys(self) -> list[str]:
        """Every camera feature, video or image, in metadata order."""
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    def missing(self) -> MissingReport:
        """Files the metadata lists that are not in the folder."""
        rep = MissingReport(meta_files=list(self._missing_meta))
        listed = self.episode_indices
        total = self.info.get("total_episodes")
        if total is not None and self.episodes and self.total_episodes != len(self.episodes):
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
                except (KeyError, DatasetError):
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


def stage_meta(
    root: str | os.PathLike,
    *,
    info: dict,
    tasks: dict[int, str] | None = None,
    episodes: Sequence[dict] | None = None,
    episodes_stats: dict[int, dict] | None = None,
) -> list[tuple[Path, Path]]:
    """Stage v2.1 metadata files; returns (temporary, target) pairs, info.json last.

    Only the parts given are staged, so a job that changes tasks and episodes leaves
    episodes_stats.jsonl alone unless it passes it.
    """
    meta = Path(root) / "meta"
    staged = []
    if tasks is not None:
        rows = ({"task_index": i, "task": t} for i, t in sorted(tasks.items()))
        staged.append((stage_jsonl(meta / "tasks.jsonl", rows), meta / "tasks.jsonl"))
    if episodes is not None:
        rows = sorted(episodes, key=lambda e: e["episode_index"])
        staged.append((stage_jsonl(meta / "episodes.jsonl", rows), meta / "episodes.jsonl"))
    if episodes_stats is not None:
        rows = ({"episode_index": i, "stats": s} for i, s in sorted(episodes_stats.items()))
        path = meta / "episodes_stats.jsonl"
        staged.append((stage_jsonl(path, rows), path))
    staged.append((stage_json(meta / "info.json", info), meta / "info.json"))
    return staged


def write_meta(root: str | os.PathLike, **parts) -> None:
    """Write v2.1 metadata files (`stage_meta`'s parts) as one commit, holding the writer lock
    (re-entrant: a writer that holds it already keeps it, and nothing is tidied)."""
    with exclusive_writer(root, "writing dataset metadata", tidy=False):
        commit_staged(root, stage_meta(root, **parts))


_EPISODE_INDEX_RE = re.compile(r'^\{"episode_index":\s*(-?\d+)')


def stage_episode_stats(
    root: str | os.PathLike, feature: str, per_episode: dict[int, dict]
) -> tuple[Path, Path] | None:
    """Stage v2.1 meta/episodes_stats.jsonl with one feature's stats replaced, per episode.

    The file holds stats of every feature (megabytes for thousands of episodes); lines are
    rewritten textually where the feature's flat stats object can be swapped in place, and
    parsed otherwise. Episodes without a line, or whose line lacks the feature, are left as
    they are. Returns the (temporary, target) pair, or None when the file does not exist.
    """
    path = Path(root) / "meta" / "episodes_stats.jsonl"
    if not path.exists():
        return None
    pattern = re.compile(r'("' + re.escape(feature) + r'":\s*)\{[^{}]*\}')
    with open(path, encoding="utf-8") as f, staging(path) as (out, tmp):
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
            out.write(line if line.endswith("\n") else line + "\n")
    return tmp, path
