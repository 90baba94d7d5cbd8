"""Reading a dataset's metadata as untrusted input: every problem is a one-line DatasetError.

A dataset may come from anywhere, so `info.json`, the tasks and episodes files (v2.1 JSON
lines, v3.0 parquet) are checked as they are read: the types LeRobot writes, counts bounded
by what the folder holds (a `total_episodes` of a billion without episode metadata is refused,
not expanded into a billion paths), and path templates that cannot climb out of the dataset
folder or format themselves into a memory bomb. Each error names the file and the field.
"""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path

import pyarrow as pa

from pipelines.dataset.errors import DatasetError, one_line

# The most episodes a dataset may claim in info.json without listing them (LeRobot's largest
# public datasets hold about 100k); the folder must also hold files for a share of them.
MAX_EPISODES = 10_000_000
_SPEC_RE = re.compile(r"^0?\d{0,2}d?$")  # `03d`, `06d`, `d`, ``: widths under 100
TEMPLATE_FIELDS = {
    "v2.1": {"data_path": {"episode_chunk", "episode_index"}},
    "v3.0": {"data_path": {"chunk_index", "file_index"}},
}
EPISODE_SUCCESS = "episode_success"  # an episode's outcome (Evo-RL's field name)
VIDEO_FIELDS = {
    "v2.1": {"episode_chunk", "episode_index", "video_key"},
    "v3.0": {"chunk_index", "file_index", "video_key"},
}


def _show(value) -> str:
    """A value from the file, for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_json(path: Path):
    """A JSON file's value; FileNotFoundError when absent, DatasetError when unreadable."""
    if path.is_dir():
        raise DatasetError(f"{path}: a folder, not a file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DatasetError(f"{path}: not valid JSON ({one_line(e)})") from e


def read_jsonl(path: Path) -> list[dict]:
    """A JSON-lines file's rows, each a JSON object (blank lines skipped)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError) as e:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({one_line(e)})") from e
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}:{n}: a {type(row).__name__}, not a JSON object")
                rows.append(row)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({one_line(e)})") from e
    except IsADirectoryError:
        raise DatasetError(f"{path}: a folder, not a file") from None
    except OSError as e:
        raise DatasetError(f"{path}: unreadable ({one_line(e)})") from e
    return rows


def whole_number(where: str, name: str, value, *, low: int = 0) -> int:
    """`value` as an int >= `low` (ints, and floats or digit strings that are whole)."""
    if isinstance(value, bool):
        raise DatasetError(f"{where}: {name} is {_show(value)}, not a number")
    if (
        isinstance(value, float)
        and value.is_integer()
        or isinstance(value, str)
        and value.strip().lstrip("-").isdigit()
        and len(value) < 20
    ):
        value = int(value)
    if not isinstance(value, int):
        raise DatasetError(f"{where}: {name} is {_show(value)}, not a whole number")
    if value < low:
        raise DatasetError(f"{where}: {name} is {value}, less than {low}")
    return value


def check_template(where: str, name: str, template, fields: set[str], keys=("",)) -> None:
    """A path template: only `fields` (no attributes, small widths), and inside the dataset."""
    if not isinstance(template, str):
        raise DatasetError(f"{where}: {name} is {_show(template)}, not a path template")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DatasetError(f"{where}: {name} {_show(template)} is not a path template ({e})") from e
    for _text, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in fields or conversion or not _SPEC_RE.match(spec or ""):
            raise DatasetError(
                f"{where}: {name} {_show(template)}: field {{{field}}} is not one of "
                f"{', '.join(sorted(fields))} with a plain width"
            )
    sample = {f: 0 for f in fields}
    for key in keys:
        rel = Path(template.format(**{**sample, "video_key": key}))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise DatasetError(f"{where}: {name} {_show(template)} leads out of the dataset folder")


def check_info(path: Path, info, version: str) -> dict:
    """info.json checked: returns its `features` (a dict of dict entries)."""
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: a {type(info).__name__}, not a JSON object")
    features = info.get("features", {})
    if not isinstance(features, dict):
        raise DatasetError(f"{path}: features is a {type(features).__name__}, not an object")
    for name, feature in features.items():
        if not isinstance(feature, dict):
            raise DatasetError(f"{path}: features[{name!r}] is {_show(feature)}, not an object")
        if feature.get("dtype") in ("video", "image"):
            check_camera_feature(path, name, feature)
    fps = info.get("fps", 30)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        raise DatasetError(f"{path}: fps is {_show(fps)}, not a number")
    if fps <= 0:
        raise DatasetError(f"{path}: fps is {fps}, not above 0")
    whole_number(str(path), "chunks_size", info.get("chunks_size", 1000), low=1)
    total_episodes(path, info)
    if "total_frames" in info and info["total_frames"] is not None:
        whole_number(str(path), "total_frames", info["total_frames"])
    videos = [k for k, f in features.items() if f.get("dtype") == "video"]
    for name, fields in TEMPLATE_FIELDS[version].items():
        if info.get(name) is not None or version == "v3.0":
            check_template(str(path), name, info.get(name), fields)
    if videos and (info.get("video_path") is not None or version == "v3.0"):
        check_template(
            str(path), "video_path", info.get("video_path"), VIDEO_FIELDS[version], videos
        )
    return features


def total_episodes(path: Path, info: dict) -> int:
    """info.json's `total_episodes` (0 when absent), checked."""
    value = info.get("total_episodes")
    total = 0 if value is None else whole_number(str(path), "total_episodes", value)
    if total > MAX_EPISODES:
        raise DatasetError(f"{path}: total_episodes {total} is implausible (over {MAX_EPISODES})")
    return total


def check_camera_feature(path: Path, name: str, feature: dict) -> None:
    where = f"{path}: features[{name!r}]"
    info = feature.get("info")
    if info is not None and not isinstance(info, dict):
        raise DatasetError(f"{where}.info is {_show(info)}, not an object")
    shape = feature.get("shape")
    if shape is not None and not (
        isinstance(shape, list)
        and len(shape) >= 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise DatasetError(f"{where}.shape is {_show(shape)}, not [height, width, channels]")


def bound_total_episodes(path: Path, total: int, files_present: int, chunks_size: int) -> None:
    """Without episode metadata, `total_episodes` is bounded by the data files present."""
    bound = max(files_present, 1) * chunks_size
    if total > bound:
        raise DatasetError(
            f"{path}: total_episodes {total} with no episode metadata and {files_present} "
            f"data file(s) present is implausible (at most {bound})"
        )


def check_episode(where: str, row: dict) -> int:
    """An episode's metadata row checked (v2.1 line or v3.0 row); returns its index."""
    if "episode_index" not in row:
        raise DatasetError(f"{where}: no episode_index")
    ep = whole_number(where, "episode_index", row["episode_index"])
    tasks = row.get("tasks")
    if tasks is not None and not (
        isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)
    ):
        raise DatasetError(f"{where}: episode {ep}: tasks is {_show(tasks)}, not a list of texts")
    if row.get("length") is not None:
        whole_number(f"{where}: episode {ep}", "length", row["length"])
    check_outcome(f"{where}: episode {ep}", row.get(EPISODE_SUCCESS))
    return ep


def check_outcome(where: str, value) -> bool | None:
    """An episode's `episode_success` (its outcome): true, false or absent (null)."""
    if value is None or isinstance(value, bool):
        return value
    raise DatasetError(f"{where}: {EPISODE_SUCCESS} is {_show(value)}, not true, false or null")


def check_task(where: str, row: dict) -> tuple[int, str]:
    if "task_index" not in row:
        raise DatasetError(f"{where}: no task_index")
    index = whole_number(where, "task_index", row["task_index"])
    task = row.get("task")
    if not isinstance(task, str):
        raise DatasetError(f"{where}: task {index}: task is {_show(task)}, not a text")
    return index, task


def v21_tasks(path: Path) -> dict[int, str]:
    return dict(check_task(f"{path}:{n}", row) for n, row in enumerate(read_jsonl(path), 1))


def v21_episodes(path: Path) -> dict[int, dict]:
    out = {}
    for n, row in enumerate(read_jsonl(path), 1):
        out[check_episode(f"{path}:{n}", row)] = row
    return out


def v21_episodes_stats(path: Path) -> dict[int, dict]:
    out = {}
    for n, row in enumerate(read_jsonl(path), 1):
        ep = check_episode(f"{path}:{n}", row)
        if not isinstance(row.get("stats"), dict):
            raise DatasetError(f"{path}:{n}: episode {ep}: stats is not an object")
        out[ep] = row["stats"]
    return out


def v30_tasks(path: Path, table: pa.Table) -> dict[int, str]:
    """meta/tasks.parquet's task texts by index (the text is its pandas index `task`)."""
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: no task_index column")
    names = [n for n in table.column_names if n != "task_index"]
    text_col = "task" if "task" in names else (names[0] if names else None)
    if text_col is None:
        raise DatasetError(f"{path}: no task text column")
    out = {}
    for n, (idx, text) in enumerate(
        zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist(), strict=True)
    ):
        out[check_task(f"{path}: row {n}", {"task_index": idx, "task": text})[0]] = text
    return out


def v30_episodes(path: Path, table: pa.Table) -> dict[int, dict]:
    """A meta/episodes file's rows by episode index (the columns the layout needs)."""
    if "episode_index" not in table.column_names:
        raise DatasetError(f"{path}: no episode_index column")
    keep = ("data/", "videos/", "dataset_")
    cols = [
        c
        for c in table.column_names
        if c in ("episode_index", "tasks", "length", EPISODE_SUCCESS) or c.startswith(keep)
    ]
    out = {}
    for n, row in enumerate(table.select(cols).to_pylist()):
        out[check_episode(f"{path}: row {n}", row)] = row
    return out
