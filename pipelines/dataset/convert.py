"""A LeRobot dataset converted between v2.1 and v3.0 (`flywheel convert`), every value kept.

v2.1 -> v3.0 (LeRobot >= 0.4): the episodes' parquet files are concatenated into files of up
to `data_files_size_in_mb` (their sizes on disk, as LeRobot's own converter counts them), and
each camera's episode videos are joined by copying their packets (`concatenate_videos`, no
re-encoding) into files of up to `video_files_size_in_mb`; a video whose codec headers differ
from the one before starts a new file rather than being re-encoded. `meta/episodes/` gets
each episode's tasks, length, file positions, spans, every other key of its episodes.jsonl
line (`episode_success`, say) and its stats from episodes_stats.jsonl as `stats/<feature>/<stat>`;
meta/stats.json aggregates them (`aggregate_stats`), as LeRobot's converter does.

v3.0 -> v2.1 (LeRobot 0.3.3, which openpi and kai0 pin): one parquet file and one video per
episode, in LeRobot 0.3.3's layout (info.json with total_chunks and total_videos, tasks.jsonl,
episodes.jsonl with every other column of meta/episodes, episodes_stats.jsonl). Each episode
is cut out of the multi-episode video without re-encoding where it starts on a key frame
(`pipelines.dataset.video_cut`), and re-encoded in the same codec otherwise: the result says
which episodes and why.

Kept as they are: every data column and value (timestamp and frame_index count per episode,
index across the dataset, in both versions), info.json's features and every key the other
version also has, the task texts, the episode indices. The Hugging Face `datasets` schema in
the parquet files' metadata is written as the target's LeRobot writes it: `Sequence` for
v2.1 (the `datasets` 3.x that LeRobot 0.3.3 pins knows no `List` and refuses the file) and
`List` for v3.0. A v3.0 dataset's `data_files_size_in_mb`/`video_files_size_in_mb` have no
place in v2.1 (converted back, they are LeRobot's defaults); null values of extra episode
columns are left out of episodes.jsonl (an absent key, as Flywheel's v2.1 outcomes are).

The result is built in a sibling folder `OUT.tmp-XXXXXXXX` and renamed to OUT only when every
file is written and fsynced: a killed conversion leaves that folder, never an OUT that looks
complete. The source is only read.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.dataset.atomic import commit_staged, fsync_path, make_folders
from pipelines.dataset.errors import DatasetError, one_line
from pipelines.dataset.layout import (
    V21,
    V30,
    LeRobotDataset,
    episode_data_path,
    episode_video_path,
    new_info,
    stage_meta,
)
from pipelines.dataset.tables import read_columns, write_parquet
from pipelines.dataset.v30 import (
    DATA_FILE_MB,
    V30_DATA_PATH,
    V30_VIDEO_PATH,
    VIDEO_FILE_MB,
    FilePos,
    assign_files,
    episode_rows,
    file_path,
    flatten_stats,
    new_info_v30,
    stage_meta_v30,
    unflatten_stats,
)
from pipelines.dataset.video import concatenate_videos
from pipelines.dataset.video_cut import EpisodeSpan, cut_episodes, stream_signature

VERSIONS = (V21, V30)
# info.json keys that only one version has
ONLY_IN = {
    V21: ("total_videos", "total_chunks"),
    V30: ("data_files_size_in_mb", "video_files_size_in_mb"),
}
# meta/episodes columns that say where an episode is in v3.0's files (no place in v2.1)
V30_PLACES = (
    "data/",
    "videos/",
    "meta/episodes/",
    "stats/",
    "dataset_from_index",
    "dataset_to_index",
)
# the `datasets` feature type of a list column, by the LeRobot version's `datasets`
HF_LIST_TYPE = {V21: "Sequence", V30: "List"}
MB = 1024 * 1024

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class ConvertResult:
    source: Path
    out: Path
    source_version: str
    version: str
    episodes: int
    frames: int
    data_files: int
    video_files: int
    # per camera: {episode: why it was re-encoded rather than cut} (v3.0 -> v2.1 only)
    reencoded: dict[str, dict[int, str]] = field(default_factory=dict)


def check_conversion(source: str | os.PathLike, out: str | os.PathLike, to: str) -> LeRobotDataset:
    """The source dataset, once the conversion is known to be possible (else DatasetError)."""
    if to not in VERSIONS:
        raise DatasetError(f"--to {to!r}: one of {', '.join(VERSIONS)}")
    src, dst = Path(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise DatasetError(f"{out}: inside the dataset {source}; give OUT outside it")
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())):
        raise DatasetError(f"{out}: exists and is not an empty folder (it is never overwritten)")
    ds = LeRobotDataset(source)
    if ds.version == to:
        raise DatasetError(
            f"{source}: already LeRobot {to}; nothing to convert (copy the folder instead)"
        )
    missing = ds.missing()
    if missing:
        raise DatasetError(f"{source}: incomplete, cannot be converted: {missing.lines()[0]}")
    return ds


def convert_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    to: str,
    progress: Progress | None = None,
) -> ConvertResult:
    """Convert `source` to LeRobot `to` (v2.1 or v3.0) in the new folder `out` (module
    docstring); `progress(what, done, total)` is called as episodes are written."""
    ds = check_conversion(source, out, to)
    out = Path(out)
    make_folders(out.parent)
    build = out.parent / f"{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        convert = _to_v30 if to == V30 else _to_v21
        result = convert(ds, build, progress or (lambda *_: None))
        fsync_path(build)
        try:
            os.rename(build, out)  # onto an empty folder too
        except OSError as e:
            raise DatasetError(f"{out}: cannot put the result in place ({one_line(e)})") from e
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    result.out = out
    return result


# --------------------------------------------------------------------------- shared


def target_info(ds: LeRobotDataset, to: str, episodes: int, frames: int) -> dict:
    """info.json for the converted dataset: the target's layout keys, the source's features
    and every other key the target version also has."""
    src = ds.info
    common = dict(
        fps=src.get("fps", ds.fps),
        features=src.get("features", {}),
        total_episodes=episodes,
        total_frames=frames,
        total_tasks=len(ds.tasks),
        robot_type=src.get("robot_type"),
        chunks_size=ds.chunks_size,
    )
    if to == V21:
        info = new_info(**common)
    else:
        info = new_info_v30(
            **common,
            data_files_size_in_mb=src.get("data_files_size_in_mb", DATA_FILE_MB),
            video_files_size_in_mb=src.get("video_files_size_in_mb", VIDEO_FILE_MB),
        )
    if "splits" in src:
        info["splits"] = src["splits"]
    for key, value in src.items():
        if key not in info and key not in ONLY_IN[ds.version]:
            info[key] = value
    return info


def hf_schema_metadata(metadata: dict | None, to: str) -> dict | None:
    """A parquet schema's metadata with its Hugging Face `datasets` features written the way
    the target version's `datasets` writes list columns (module docstring)."""
    if not metadata or b"huggingface" not in metadata:
        return metadata
    try:
        hf = json.loads(metadata[b"huggingface"])
    except ValueError:
        return metadata  # not `datasets`' own: left alone
    old = HF_LIST_TYPE[V30 if to == V21 else V21]

    def rewrite(node):
        if isinstance(node, dict):
            return {
                k: HF_LIST_TYPE[to] if k == "_type" and v == old else rewrite(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    hf = rewrite(hf)
    if to == V21 and isinstance(hf, dict):
        hf.pop("fingerprint", None)  # `datasets` 4's; LeRobot 0.3.3's files have none
    return {**metadata, b"huggingface": json.dumps(hf).encode()}


def _rows_checked(ds: LeRobotDataset, ep: int, table: pa.Table, where: Path) -> int:
    n = ds.episode_length(ep)
    if table.num_rows != n:
        raise DatasetError(
            f"{ds.relative(where)}: episode {ep} has {table.num_rows} rows, its metadata says {n}"
        )
    return n


# --------------------------------------------------------------------------- v2.1 -> v3.0


def _to_v30(ds: LeRobotDataset, root: Path, progress: Progress) -> ConvertResult:
    episodes = ds.episode_indices
    chunks = ds.chunks_size
    info = target_info(ds, V30, len(episodes), 0)
    rows = {
        ep: {"episode_index": ep, "tasks": list(ds.episodes[ep].get("tasks") or []), "length": 0}
        for ep in episodes
    }
    paths = [ds.data_file(ep) for ep in episodes]
    positions = assign_files(
        [os.path.getsize(p) for p in paths], info["data_files_size_in_mb"], chunks
    )
    groups: dict[FilePos, list[int]] = {}
    for i, pos in enumerate(positions):
        groups.setdefault(pos, []).append(i)
    first = 0
    for pos, members in groups.items():
        tables = [read_columns(paths[i]) for i in members]
        try:
            table = pa.concat_tables(tables)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DatasetError(
                f"{ds.relative(paths[members[-1]])}: its columns differ from "
                f"{ds.relative(paths[members[0]])}'s ({one_line(e)})"
            ) from e
        metadata = hf_schema_metadata(tables[0].schema.metadata, V30)
        write_parquet(file_path(root, V30_DATA_PATH, pos), table.replace_schema_metadata(metadata))
        for i, t in zip(members, tables, strict=True):
            ep = episodes[i]
            n = _rows_checked(ds, ep, t, paths[i])
            rows[ep].update(
                {
                    "length": n,
                    "data/chunk_index": pos.chunk,
                    "data/file_index": pos.file,
                    "dataset_from_index": first,
                    "dataset_to_index": first + n,
                }
            )
            first += n
        progress("data", members[-1] + 1, len(episodes))
    video_files = sum(_join_videos(ds, root, key, rows, info, progress) for key in ds.video_keys)
    for ep in episodes:
        extra = {k: v for k, v in ds.episodes[ep].items() if k not in rows[ep]}
        rows[ep].update(extra)
        rows[ep].update(flatten_stats(ds.episodes_stats.get(ep, {})))
    info["total_frames"] = first
    commit_staged(
        root, stage_meta_v30(root, info=info, tasks=ds.tasks, rows=_same_keys(list(rows.values())))
    )
    return ConvertResult(
        ds.root, root, ds.version, V30, len(episodes), first, len(groups), video_files
    )


def _join_videos(
    ds: LeRobotDataset, root: Path, key: str, rows: dict[int, dict], info: dict, progress
) -> int:
    """Camera `key`'s episode videos joined into v3.0 files (packets copied); returns how many
    files. A file is full at `video_files_size_in_mb`; a video whose codec headers differ from
    the one before starts the next file (joining them would need re-encoding)."""
    episodes = ds.episode_indices
    limit = info["video_files_size_in_mb"]
    groups: list[tuple[FilePos, list[int]]] = []
    size, signature = 0, None
    for ep in episodes:
        path = ds.video_file(ep, key)
        s, sig = os.path.getsize(path), stream_signature(path)
        if not groups or (size + s) / MB >= limit or sig != signature:
            pos = groups[-1][0].next(ds.chunks_size) if groups else FilePos(0, 0)
            groups.append((pos, []))
            size = 0
        groups[-1][1].append(ep)
        size, signature = size + s, sig
    done = 0
    for pos, members in groups:
        starts = concatenate_videos(
            [ds.video_file(ep, key) for ep in members], file_path(root, V30_VIDEO_PATH, pos, key)
        )
        for ep, start in zip(members, starts, strict=True):
            rows[ep][f"videos/{key}/chunk_index"] = pos.chunk
            rows[ep][f"videos/{key}/file_index"] = pos.file
            rows[ep][f"videos/{key}/from_timestamp"] = start
            rows[ep][f"videos/{key}/to_timestamp"] = start + rows[ep]["length"] / float(ds.fps)
        done += len(members)
        progress(key, done, len(episodes))
    return len(groups)


def _same_keys(rows: list[dict]) -> list[dict]:
    """Rows with every key any of them has (None where absent), in the order keys first
    appear: a parquet table takes its columns from the first row."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]


# --------------------------------------------------------------------------- v3.0 -> v2.1


def _to_v21(ds: LeRobotDataset, root: Path, progress: Progress) -> ConvertResult:
    episodes = ds.episode_indices
    chunks = ds.chunks_size
    by_file: dict[Path, list[int]] = {}
    for ep in episodes:
        by_file.setdefault(ds.data_file(ep), []).append(ep)
    frames = done = 0
    for path, members in by_file.items():
        table = read_columns(path)
        metadata = hf_schema_metadata(table.schema.metadata, V21)
        column = table.column("episode_index")
        for ep in members:
            part = table.filter(pc.equal(column, ep))
            frames += _rows_checked(ds, ep, part, path)
            target = episode_data_path(root, ep, chunks_size=chunks)
            write_parquet(target, part.replace_schema_metadata(metadata))
        done += len(members)
        progress("data", done, len(episodes))
    reencoded = {}
    for key in ds.video_keys:
        why = _cut_videos(ds, root, key, progress)
        if why:
            reencoded[key] = why
    lines, stats = [], {}
    for row in episode_rows(ds):
        ep = row["episode_index"]
        line = {"episode_index": ep, "tasks": row.get("tasks") or [], "length": row["length"]}
        for k, v in row.items():
            if k not in line and v is not None and not k.startswith(V30_PLACES):
                line[k] = v
        lines.append(line)
        stats[ep] = unflatten_stats(row)
    info = target_info(ds, V21, len(episodes), frames)
    commit_staged(
        root, stage_meta(root, info=info, tasks=ds.tasks, episodes=lines, episodes_stats=stats)
    )
    return ConvertResult(
        ds.root,
        root,
        ds.version,
        V21,
        len(episodes),
        frames,
        len(episodes),
        len(episodes) * len(ds.video_keys),
        reencoded,
    )


def _cut_videos(ds: LeRobotDataset, root: Path, key: str, progress) -> dict[int, str]:
    """Camera `key`'s episodes cut out of its v3.0 files; {episode: why re-encoded}."""
    codec = (ds.features[key].get("info") or {}).get("video.codec")
    by_file: dict[Path, list[EpisodeSpan]] = {}
    for ep in ds.episode_indices:
        start, _ = ds.video_span(ep, key)
        span = EpisodeSpan(ep, float(start), ds.episode_length(ep))
        by_file.setdefault(ds.video_file(ep, key), []).append(span)
    reencoded, done = {}, 0
    for path, spans in by_file.items():
        outputs = {
            s.episode: episode_video_path(root, s.episode, key, ds.chunks_size) for s in spans
        }
        reencoded.update(cut_episodes(path, spans, outputs, float(ds.fps), codec))
        done += len(spans)
        progress(key, done, len(ds.episode_indices))
    return reencoded
