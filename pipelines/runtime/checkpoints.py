"""Checkpoint folders: the kind registry, reading, writing, finding and resuming them.

A checkpoint is a folder holding `state.pt` (torch: model, optimizer, step, ...) and one JSON
file named after the checkpoint's kind (`estimator.json`, `policy.json`, `classifier.json`,
...) with its config; the kind is how a command refuses a checkpoint of another model.
A run lives in `<storage>/<name>/checkpoint_*` (Ray Train V2): rerunning the same name resumes
from its latest checkpoint, and `check_resume` refuses a rerun that would train another model
under the same name (it would crash while loading the state, or silently mix models).

Every family registers its kind once (`KIND = register_kind("estimator", "...")`), so that
`KINDS` lists what a checkpoint folder may hold and who writes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipelines.dataset import DatasetError

CHECKPOINT_STATE = "state.pt"

KINDS: dict[str, str] = {}
"""Every registered checkpoint kind: what writes it (`register_kind`)."""


def register_kind(kind: str, written_by: str) -> str:
    """Register a checkpoint kind (once per family); returns `kind`, for `KIND = ...`."""
    if KINDS.get(kind, written_by) != written_by:
        raise ValueError(f"checkpoint kind {kind!r} is already {KINDS[kind]}'s")
    KINDS[kind] = written_by
    return kind


def meta_name(kind: str) -> str:
    return f"{kind}.json"


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """The kind of the checkpoint folder at `path` (None if it is not one)."""
    path = Path(path)
    if not (path / CHECKPOINT_STATE).exists():
        return None
    kinds = sorted(p.stem for p in path.glob("*.json"))
    return kinds[0] if len(kinds) == 1 else None


def read_meta(path: str | os.PathLike, kind: str) -> dict:
    """The JSON config of a `kind` checkpoint; a one-line DatasetError for anything else."""
    path = Path(path)
    meta_path = path / meta_name(kind)
    if not meta_path.exists():
        found = checkpoint_kind(path)
        what = f"{_a(found)} checkpoint" if found else "no checkpoint at all"
        raise DatasetError(f"{path}: not {_a(kind)} checkpoint (no {meta_name(kind)}; {what})")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{meta_path}: unreadable ({' '.join(str(e).split())})") from e


def write_checkpoint(folder: str | os.PathLike, kind: str, state: dict, meta: dict) -> None:
    """Write a checkpoint's state and config into `folder` (a fresh temporary folder)."""
    import torch  # torch stays out of the light modules that read checkpoint metadata

    folder = Path(folder)
    torch.save(state, folder / CHECKPOINT_STATE)
    (folder / meta_name(kind)).write_text(json.dumps(meta, indent=2))


def load_state(path: str | os.PathLike, device="cpu") -> dict:
    import torch  # as in write_checkpoint

    return torch.load(Path(path) / CHECKPOINT_STATE, map_location=device)


def latest_checkpoint(run_dir: str | os.PathLike, kind: str) -> Path | None:
    """The run's checkpoint with the most steps (the one a rerun resumes from), if any."""
    best, best_step = None, -1
    for meta in sorted(Path(run_dir).glob(f"checkpoint_*/{meta_name(kind)}")):
        try:
            step = int(json.loads(meta.read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if step >= best_step:
            best, best_step = meta.parent, step
    return best


def check_resume(
    run_dir: str | os.PathLike,
    kind: str,
    wanted: dict,
    run_name: str,
    key: str = "model",
    defaults: dict | None = None,
) -> dict | None:
    """The latest checkpoint's config if the run exists; a DatasetError if it is another model.

    `wanted` is this command's `meta[key]`; every entry that differs is named. `defaults`: the
    values of options added after a checkpoint was written (it lacks them): such a checkpoint
    trained as their default, so it resumes when this command keeps the default.
    """
    previous = latest_checkpoint(run_dir, kind)
    if previous is None:
        return None
    meta = read_meta(previous, kind)
    have = {**(defaults or {}), **meta.get(key, {})}
    differ = [
        f"{k} {have.get(k)!r} (this command: {v!r})" for k, v in wanted.items() if have.get(k) != v
    ]
    if differ:
        raise DatasetError(
            f"{Path(run_dir)}: run {run_name!r} trains another {kind}: {'; '.join(differ)}; "
            "choose another --name"
        )
    return {**meta, "path": str(previous)}
