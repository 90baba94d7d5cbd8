"""Silent corruption: every file read whole (`verify`), or only its footer (`check_footers`).

A parquet file with a corrupt column chunk opens, and its footer reads: only reading every
column of every row group finds the damage. `verify` does that for every data file and decodes
every frame of every video (for `flywheel inspect --verify`); `check_footers` is the cheap
first pass of a writer that rewrites only some files (label): each file's footer and row count
against the episode metadata. Both return findings, one line each naming the file; an empty
list means nothing was found.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.dataset.errors import DatasetError, one_line
from pipelines.dataset.layout import V21, LeRobotDataset
from pipelines.dataset.video import count_video_frames


def _expected_rows(ds: LeRobotDataset, data_dir: str) -> tuple[dict[Path, int | None], list[str]]:
    """Each listed data file and the rows the metadata gives it (None when it does not say)."""
    files: dict[Path, int | None] = {}
    findings = []
    for ep in ds.episode_indices:
        try:
            path = ds.data_file(ep, data_dir)
        except (KeyError, DatasetError):
            findings.append(f"episode {ep}: metadata does not say where its data is")
            continue
        length = ds.episodes.get(ep, {}).get("length")
        if path not in files:
            files[path] = 0
        if length is None or files[path] is None:
            files[path] = None
        else:
            files[path] += int(length)
    return files, findings


def _footer_rows(ds: LeRobotDataset, path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow raises several types for unreadable footers
        raise DatasetError(f"{ds.relative(path)}: unreadable parquet footer ({one_line(e)})") from e


def check_footers(ds: LeRobotDataset, data_dir: str = "data") -> list[str]:
    """Each present data file's footer read, its row count checked against the metadata."""
    files, findings = _expected_rows(ds, data_dir)
    for path, want in files.items():
        if not path.exists():
            findings.append(f"{ds.relative(path)}: missing")
            continue
        try:
            rows = _footer_rows(ds, path)
        except DatasetError as e:
            findings.append(str(e))
            continue
        if want is not None and rows != want:
            findings.append(f"{ds.relative(path)}: {rows} rows, the episode metadata says {want}")
    return findings


def _verify_data(ds: LeRobotDataset, path: Path, want: int | None) -> list[str]:
    try:
        table = pq.ParquetFile(path).read(use_threads=False)
    except Exception as e:
        return [f"{ds.relative(path)}: unreadable parquet data ({one_line(e)})"]
    out = []
    if want is not None and table.num_rows != want:
        out.append(f"{ds.relative(path)}: {table.num_rows} rows, the episode metadata says {want}")
    if ds.version != V21 and "episode_index" in table.column_names:
        counts = Counter(table.column("episode_index").to_pylist())
        for ep, n in sorted(counts.items()):
            length = ds.episodes.get(ep, {}).get("length")
            if length is not None and int(length) != n:
                out.append(f"{ds.relative(path)}: episode {ep} has {n} rows, its metadata {length}")
    return out


def _video_files(ds: LeRobotDataset) -> dict[tuple[str, Path], int | None]:
    """Each listed video file and the frames the metadata gives it (None when unknown)."""
    out: dict[tuple[str, Path], int | None] = {}
    for key in ds.video_keys:
        for ep in ds.episode_indices:
            try:
                path = ds.video_file(ep, key)
            except (KeyError, DatasetError):
                continue
            length = ds.episodes.get(ep, {}).get("length")
            have = out.get((key, path), 0)
            out[(key, path)] = None if length is None or have is None else have + int(length)
    return out


def verify(ds: LeRobotDataset, data_dir: str = "data") -> list[str]:
    """Read every data file whole and decode every video frame; one-line findings.

    Missing files are findings too. A video must hold at least the frames its episodes span
    (LeRobot's writers may leave a frame or two more, never fewer).
    """
    files, findings = _expected_rows(ds, data_dir)
    for path, want in files.items():
        if not path.exists():
            findings.append(f"{ds.relative(path)}: missing")
        else:
            findings += _verify_data(ds, path, want)
    for (key, path), want in _video_files(ds).items():
        if not path.exists():
            findings.append(f"{ds.relative(path)}: missing ({key})")
            continue
        codec = (ds.features[key].get("info") or {}).get("video.codec")
        try:
            frames = count_video_frames(path, codec)
        except DatasetError as e:
            findings.append(f"{ds.relative(path)}: {str(e).removeprefix(f'{path}: ')}")
            continue
        if want is not None and frames < want:
            findings.append(
                f"{ds.relative(path)}: {frames} frames, its episodes span {want} ({key})"
            )
    return findings
