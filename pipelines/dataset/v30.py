"""LeRobot v3.0 writing: files chunked by size, and the metadata that describes them.

A v3.0 dataset packs consecutive episodes into shared files, as LeRobot >= 0.4 does: an
episode goes into the current data (video) file unless the file's size plus the episode's
would reach `data_files_size_in_mb` (`video_files_size_in_mb`), in which case it starts the
next file; file indices count up within a chunk folder and roll over into the next chunk after
`chunks_size` files. `meta/episodes/chunk-XXX/file-XXX.parquet` has one row per episode: its
tasks, length, where its rows are (`data/chunk_index`, `data/file_index`,
`dataset_from_index`, `dataset_to_index`), where its frames are in each camera's video
(`videos/<key>/chunk_index`, `file_index`, `from_timestamp`, `to_timestamp`), its stats
flattened as `stats/<feature>/<stat>`, and where the row itself is. `meta/tasks.parquet` holds
the task texts as its (pandas) index and `task_index` as its column; `meta/stats.json` the
aggregated stats. `episode_success` (the episode's outcome, `pipelines.dataset.outcomes`) is a
boolean column of meta/episodes, null where an episode has none, present once any episode has one.

`assign_files` is the packing rule (pure); `write_episodes` writes a whole new dataset's files
at once (each file once: `flywheel synth`), and `V30Appender` appends one episode to an
existing dataset (recording), rewriting the current files as one commit
(`pipelines.dataset.atomic.commit_staged`): a reader, or a kill at any moment, sees the
dataset with or without the episode, never part of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.dataset.atomic import commit_staged, stage_json, temp_path_for
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.layout import DEFAULT_CHUNKS_SIZE, V30, LeRobotDataset
from pipelines.dataset.lock import WriterLock, exclusive_writer
from pipelines.dataset.metadata import EPISODE_SUCCESS
from pipelines.dataset.stats import aggregate_stats
from pipelines.dataset.tables import read_columns, write_parquet, write_parquet_temp
from pipelines.dataset.video import concatenate_videos

V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_FILE_MB = 100  # LeRobot's defaults
VIDEO_FILE_MB = 200
_MB = 1024 * 1024


@dataclass(frozen=True)
class FilePos:
    chunk: int
    file: int

    def next(self, chunks_size: int) -> FilePos:
        if self.file + 1 >= chunks_size:
            return FilePos(self.chunk + 1, 0)
        return FilePos(self.chunk, self.file + 1)


def assign_files(
    sizes: Sequence[int],
    limit_mb: float,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    current: FilePos | None = None,
    current_size: int = 0,
) -> list[FilePos]:
    """The file each of consecutive episodes (of `sizes` bytes) goes into (module docstring).

    `current` is the file the last existing episode is in, `current_size` its size in bytes.
    """
    out = []
    pos, size = (current or FilePos(0, 0)), (current_size if current else 0)
    for s in sizes:
        if size > 0 and (size + s) / _MB >= limit_mb:
            pos, size = pos.next(chunks_size), 0
        out.append(pos)
        size += s
    return out


def file_path(root: Path, template: str, pos: FilePos, key: str | None = None) -> Path:
    """`root` / a v3.0 path template filled in for file `pos` (and camera `key`)."""
    kwargs = {"video_key": key} if key else {}
    return Path(root) / template.format(chunk_index=pos.chunk, file_index=pos.file, **kwargs)


def table_bytes(table: pa.Table) -> int:
    """An episode's size as LeRobot counts it (the in-memory Arrow size)."""
    return int(table.nbytes)


# --------------------------------------------------------------------------- metadata


def new_info_v30(
    *,
    fps: float,
    features: dict[str, dict],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    robot_type: str | None = None,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILE_MB,
    video_files_size_in_mb: float = VIDEO_FILE_MB,
) -> dict:
    has_video = any(f.get("dtype") == "video" for f in features.values())
    return {
        "codebase_version": V30,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_files_size_in_mb,
        "video_files_size_in_mb": video_files_size_in_mb,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": V30_DATA_PATH,
        "video_path": V30_VIDEO_PATH if has_video else None,
        "features": features,
    }


def tasks_table(tasks: dict[int, str]) -> pa.Table:
    """meta/tasks.parquet: the task texts as the pandas index `task`, `task_index` a column."""
    import pandas as pd

    items = sorted(tasks.items())
    frame = pd.DataFrame(
        {"task_index": np.array([i for i, _ in items], np.int64)},
        index=pd.Index([t for _, t in items], name="task"),
    )
    return pa.Table.from_pandas(frame, preserve_index=True)


def flatten_stats(stats: dict[str, dict]) -> dict[str, list]:
    """{'observation.state': {'min': [...]}} -> {'stats/observation.state/min': [...]}."""
    return {f"stats/{feat}/{k}": v for feat, s in stats.items() for k, v in s.items()}


def unflatten_stats(row: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, value in row.items():
        if key.startswith("stats/") and value is not None:
            feat, _, stat = key[len("stats/") :].rpartition("/")
            out.setdefault(feat, {})[stat] = value
    return out


def episode_rows(ds: LeRobotDataset) -> list[dict]:
    """Every row of the dataset's meta/episodes files, in episode order (all columns)."""
    rows = []
    for path in sorted((ds.meta_dir / "episodes").glob("chunk-*/file-*.parquet")):
        rows.extend(read_columns(path).to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def episodes_tables(rows: list[dict], limit_mb: float = DATA_FILE_MB) -> dict[Path, pa.Table]:
    """The meta/episodes files (relative path -> table) holding `rows`, packed by size."""
    out: dict[FilePos, list[dict]] = {}
    positions = [
        FilePos(r["meta/episodes/chunk_index"], r["meta/episodes/file_index"])
        if "meta/episodes/chunk_index" in r
        else None
        for r in rows
    ]
    if any(p is None for p in positions):  # new rows: pack them all anew
        sizes = [len(str(r)) for r in rows]
        positions = assign_files(sizes, limit_mb)
    outcomes = any(EPISODE_SUCCESS in r for r in rows)
    for r, pos in zip(rows, positions, strict=True):
        r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = pos.chunk, pos.file
        if outcomes:  # every row has the column (pyarrow takes the first row's keys)
            r.setdefault(EPISODE_SUCCESS, None)
        out.setdefault(pos, []).append(r)
    return {
        Path(V30_EPISODES_PATH.format(chunk_index=p.chunk, file_index=p.file)): _episodes_table(
            items
        )
        for p, items in out.items()
    }


def _episodes_table(rows: list[dict]) -> pa.Table:
    """A meta/episodes file's table; `episode_success` boolean even where every row is null."""
    table = pa.Table.from_pylist(rows)
    if EPISODE_SUCCESS in table.column_names:
        i = table.column_names.index(EPISODE_SUCCESS)
        table = table.set_column(i, EPISODE_SUCCESS, table.column(i).cast(pa.bool_()))
    return table


def stage_meta_v30(
    root: str | os.PathLike,
    *,
    info: dict,
    tasks: dict[int, str] | None = None,
    rows: list[dict] | None = None,
    stats: dict | None = None,
) -> list[tuple[Path, Path]]:
    """Stage v3.0 metadata (meta/episodes files, tasks.parquet, stats.json, info.json last).

    `rows` are every episode's row (with its flattened stats); stats.json is `stats`, or else
    aggregated from the rows. Returns (temporary, target) pairs for `commit_staged`.
    """
    root = Path(root)
    staged = []
    if rows is not None:
        for rel, table in episodes_tables(
            rows, info.get("data_files_size_in_mb", DATA_FILE_MB)
        ).items():
            staged.append((write_parquet_temp(root / rel, table), root / rel))
        stats = aggregate_stats(unflatten_stats(r) for r in rows)
        staged.append(
            (stage_json(root / "meta" / "stats.json", stats), root / "meta" / "stats.json")
        )
    if tasks is not None:
        path = root / "meta" / "tasks.parquet"
        staged.append((write_parquet_temp(path, tasks_table(tasks)), path))
    info_path = root / "meta" / "info.json"
    staged.append((stage_json(info_path, info), info_path))
    return staged


# --------------------------------------------------------------------------- a new dataset


def write_episodes(
    root: str | os.PathLike,
    *,
    tables: list[pa.Table],
    videos: dict[str, list[Path]],
    stats: list[dict],
    tasks: dict[int, str],
    episode_tasks: list[list[str]],
    info: dict,
    map_files=map,
    outcomes: Sequence[bool | None] | None = None,
) -> None:
    """Write a whole new v3.0 dataset from its episodes (in episode order), each file once.

    `tables[i]`: episode i's frames (with `index` already global); `videos[key][i]`: a
    single-episode video of camera `key` (consumed: moved or concatenated into place);
    `stats[i]`: its stats; `info`: info.json without the totals (they are filled in).
    `map_files(fn, jobs)` runs the per-file writes (`map`, or a Ray fan-out). `outcomes[i]`:
    episode i's `episode_success` (None: no outcome; no `outcomes`: none has one).
    """
    if outcomes is not None and len(outcomes) != len(tables):
        raise ValueError(f"{len(outcomes)} outcomes for {len(tables)} episodes")
    with exclusive_writer(root, "writing a dataset", tidy=False):
        _write_episodes(
            Path(root), tables, videos, stats, tasks, episode_tasks, info, map_files, outcomes
        )


def _write_episodes(
    root, tables, videos, stats, tasks, episode_tasks, info, map_files, outcomes
) -> None:
    chunks = int(info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
    data_pos = assign_files(
        [table_bytes(t) for t in tables], info.get("data_files_size_in_mb", DATA_FILE_MB), chunks
    )
    data_jobs: dict[FilePos, list[int]] = {}
    for i, pos in enumerate(data_pos):
        data_jobs.setdefault(pos, []).append(i)
    jobs = [
        (
            root / V30_DATA_PATH.format(chunk_index=p.chunk, file_index=p.file),
            [tables[i] for i in eps],
        )
        for p, eps in data_jobs.items()
    ]
    list(map_files(_write_data_file, jobs))

    spans: dict[str, list[tuple[FilePos, float]]] = {}
    video_jobs = []
    for key, files in videos.items():
        pos = assign_files(
            [os.path.getsize(f) for f in files],
            info.get("video_files_size_in_mb", VIDEO_FILE_MB),
            chunks,
        )
        groups: dict[FilePos, list[int]] = {}
        for i, p in enumerate(pos):
            groups.setdefault(p, []).append(i)
        for p, eps in groups.items():
            out = root / V30_VIDEO_PATH.format(
                video_key=key, chunk_index=p.chunk, file_index=p.file
            )
            video_jobs.append((key, p, eps, [files[i] for i in eps], out))
    starts = list(map_files(_write_video_file, video_jobs))
    for (key, p, eps, inputs, _), offsets in zip(video_jobs, starts, strict=True):
        for i, start in zip(eps, offsets, strict=True):
            spans.setdefault(key, [None] * len(tables))[i] = (p, float(start))
        for f in inputs:
            Path(f).unlink(missing_ok=True)

    fps = float(info["fps"])
    rows, first = [], 0
    for i, table in enumerate(tables):
        n = table.num_rows
        row = {
            "episode_index": i,
            "tasks": list(episode_tasks[i]),
            "length": n,
            "data/chunk_index": data_pos[i].chunk,
            "data/file_index": data_pos[i].file,
            "dataset_from_index": first,
            "dataset_to_index": first + n,
        }
        for key in videos:
            p, start = spans[key][i]
            row[f"videos/{key}/chunk_index"] = p.chunk
            row[f"videos/{key}/file_index"] = p.file
            row[f"videos/{key}/from_timestamp"] = start
            row[f"videos/{key}/to_timestamp"] = start + n / fps
        row.update(flatten_stats(stats[i]))
        if outcomes is not None and outcomes[i] is not None:
            row[EPISODE_SUCCESS] = bool(outcomes[i])
        rows.append(row)
        first += n
    info = {
        **info,
        "total_episodes": len(tables),
        "total_frames": first,
        "total_tasks": len(tasks),
        "splits": {"train": f"0:{len(tables)}"},
    }
    commit_staged(root, stage_meta_v30(root, info=info, tasks=tasks, rows=rows))


def _write_data_file(job: tuple[Path, list[pa.Table]]) -> None:
    path, tables = job
    write_parquet(path, pa.concat_tables(tables))


def _write_video_file(job) -> list[float]:
    return concatenate_videos(job[3], job[4])


# --------------------------------------------------------------------------- appending


class V30Appender:
    """Appends episodes, one commit each, to a v3.0 dataset (new or existing).

    Open it on a dataset folder with its (future) info.json; `append` adds one episode.
    """

    def __init__(self, root: str | os.PathLike, info: dict):
        self.root = Path(root)
        self.info = info
        self.rows: list[dict] = []
        self.tasks: dict[int, str] = {}
        # one writer at a time, until `close()`: taking the lock finishes a killed writer's
        # commit and removes its temporaries (not when a recorder holding it opens this)
        self._lock = WriterLock(self.root, "appending episodes")
        try:
            if (self.root / "meta" / "info.json").exists():
                ds = LeRobotDataset(self.root)
                if ds.version != V30:
                    raise DatasetError(f"{self.root}: LeRobot {ds.version}, not v3.0")
                self.info = ds.info
                self.tasks = dict(ds.tasks)
                self.rows = episode_rows(ds)
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Let the dataset go (its writer lock)."""
        self._lock.release()

    @property
    def total_frames(self) -> int:
        return sum(int(r["length"]) for r in self.rows)

    def task_index(self, task: str) -> int:
        """The index of a task text, a new one if the dataset does not have it yet."""
        for i, t in self.tasks.items():
            if t == task:
                return i
        i = max(self.tasks, default=-1) + 1
        self.tasks[i] = task
        return i

    def append(
        self,
        table: pa.Table,
        videos: dict[str, Path],
        stats: dict,
        tasks: list[str],
        episode_success: bool | None = None,
    ):
        """Add one episode (`table` with its global `index`, single-episode videos) and its
        outcome (`episode_success`; None: none)."""
        chunks = int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
        last = self.rows[-1] if self.rows else None
        n = table.num_rows
        row = {
            "episode_index": len(self.rows),
            "tasks": list(tasks),
            "length": n,
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + n,
        }
        staged: list[tuple[Path, Path]] = []
        try:
            # Earlier commits are complete (a killed one is finished on opening), so the current
            # files hold exactly the episodes the metadata lists: append to them, or start anew.
            cur = FilePos(last["data/chunk_index"], last["data/file_index"]) if last else None
            (pos,) = assign_files(
                [table_bytes(table)],
                self.info.get("data_files_size_in_mb", DATA_FILE_MB),
                chunks,
                cur,
                self._size(V30_DATA_PATH, cur),
            )
            path = self._path(V30_DATA_PATH, pos)
            if pos == cur:
                old = read_columns(path)
                table = pa.concat_tables([old, table.select(old.column_names)])
            staged.append((write_parquet_temp(path, table), path))
            row["data/chunk_index"], row["data/file_index"] = pos.chunk, pos.file

            for key, episode_video in videos.items():
                vcur = None
                if last:
                    vcur = FilePos(
                        last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"]
                    )
                (vpos,) = assign_files(
                    [os.path.getsize(episode_video)],
                    self.info.get("video_files_size_in_mb", VIDEO_FILE_MB),
                    chunks,
                    vcur,
                    self._size(V30_VIDEO_PATH, vcur, key),
                )
                target = self._path(V30_VIDEO_PATH, vpos, key)
                inputs = [target, episode_video] if vpos == vcur else [episode_video]
                tmp = temp_path_for(target)
                start = concatenate_videos(inputs, tmp)[-1]
                staged.append((tmp, target))
                row[f"videos/{key}/chunk_index"] = vpos.chunk
                row[f"videos/{key}/file_index"] = vpos.file
                row[f"videos/{key}/from_timestamp"] = float(start)
                row[f"videos/{key}/to_timestamp"] = float(start) + n / float(self.info["fps"])
            row.update(flatten_stats(stats))
            if episode_success is not None:
                row[EPISODE_SUCCESS] = bool(episode_success)
            if last is not None:  # the new row goes into the last meta/episodes file
                for k in ("meta/episodes/chunk_index", "meta/episodes/file_index"):
                    row[k] = last[k]
            rows = [*self.rows, row]
            info = {
                **self.info,
                "total_episodes": len(rows),
                "total_frames": row["dataset_to_index"],
                "total_tasks": len(self.tasks),
                "splits": {"train": f"0:{len(rows)}"},
            }
            staged += stage_meta_v30(self.root, info=info, tasks=self.tasks, rows=rows)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        commit_staged(self.root, staged)
        self.rows, self.info = rows, info
        return row

    def _size(self, template: str, pos: FilePos | None, key: str | None = None) -> int:
        path = self._path(template, pos, key) if pos is not None else None
        return os.path.getsize(path) if path is not None and path.exists() else 0

    def _path(self, template: str, pos: FilePos, key: str | None = None) -> Path:
        return file_path(self.root, template, pos, key)
