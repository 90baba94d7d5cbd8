"""The HIL-SERL learner's checkpoints: atomic folders, this learner's own, pruning.

A checkpoint is a folder `checkpoint_<learner step>_<env steps>` in the run folder holding
`state.pt` (agent, optimizers, counters, monitor, logs) and `hilserl.json` (counters, the
agent's config, the run's settings, the replay buffers' manifests). It is written as a
temporary folder, fsynced, and renamed: it appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import torch

from pipelines.dataset import fsync_path
from pipelines.rl.config import KIND
from pipelines.rl.replay import remove_unlisted_segments
from pipelines.runtime.checkpoints import CHECKPOINT_STATE, meta_name

STATE_FILE = CHECKPOINT_STATE
META_FILE = meta_name(KIND)
KEEP_CHECKPOINTS = 2  # the newest checkpoints kept (and the replay segments they list)
CHECKPOINT_NAME = re.compile(r"checkpoint_\d{9,}_\d{9,}")


def checkpoint_name(step: int, env_steps: int) -> str:
    return f"checkpoint_{step:09d}_{env_steps:09d}"


def write_atomically(run_dir: Path, name: str, state: dict, meta: dict) -> Path:
    """The checkpoint folder `run_dir/name`, written whole (module docstring); an existing one
    is kept as it is."""
    final = run_dir / name
    if final.exists():
        return final
    tmp = run_dir / f".{name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        for f in (STATE_FILE, META_FILE):
            fsync_path(tmp / f)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def own_checkpoints(run_dir: Path) -> list[Path]:
    """The learner's checkpoints, oldest first: `checkpoint_<step>_<env steps>` folders holding
    its meta file. Anything else in the run folder (another job's checkpoint, a file) is not
    the learner's to delete."""
    return sorted(
        path
        for path in run_dir.glob("checkpoint_*")
        if CHECKPOINT_NAME.fullmatch(path.name) and (path / META_FILE).is_file()
    )


def prune(run_dir: Path, keep: int = KEEP_CHECKPOINTS) -> None:
    """Keep the newest `keep` checkpoints, the replay segments they list, nothing stale."""
    kept = own_checkpoints(run_dir)
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run_dir.glob(".checkpoint_*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    manifests = []
    for path in own_checkpoints(run_dir)[-keep:]:
        try:
            manifests.append(json.loads((path / META_FILE).read_text())["replay"])
        except (OSError, ValueError, KeyError):
            continue
    for name in ("online", "offline"):
        remove_unlisted_segments(run_dir / "replay" / name, [m[name] for m in manifests])
