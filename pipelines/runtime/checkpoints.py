"""Checkpoint folders: the kind registry, reading, writing, finding and resuming them.

A checkpoint is a folder holding `state.pt` (torch: model, optimizer, step, ...) and one JSON
file named after the checkpoint's kind (`estimator.json`, `policy.json`, `classifier.json`,
...) with its config; the kind is how a command refuses a checkpoint of another model.
A run lives in `<storage>/<name>/checkpoint_*` (Ray Train V2): rerunning the same name resumes
from its latest checkpoint, and `check_resume` refuses a rerun that would train another model
under the same name (it would crash while loading the state, or silently mix models).

Every family registers its kind once (`KIND = register_kind("estimator", "...")`), so that
`KINDS` lists what a checkpoint folder may hold and who writes it.

Ray Train copies a reported checkpoint into `checkpoint_<ts>/` in place (no rename, no
fsync), so a crash or a reader at the wrong moment sees a folder whose `state.pt` is short.
`latest_checkpoint` therefore takes only the checkpoints Ray's checkpoint manager has
registered (its snapshot, `checkpoint_manager_snapshot.json`, written after each checkpoint is
whole) among the folders named as Ray names them, when the run has one (a HIL-SERL learner
writes its own checkpoints whole, by rename, in the same kind of folder), and verifies each
candidate (`state_problem`: a complete zip whose every member matches its CRC, which
`torch.load(weights_only=True)` reads): a broken one is skipped, the newest good one wins.
`load_state` loads with `weights_only=True` (no pickled code runs) and turns a corrupt file
into a one-line `DatasetError`.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from pipelines.dataset import DatasetError

CHECKPOINT_STATE = "state.pt"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's checkpoint manager state
RAY_NAME = re.compile(r"checkpoint_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.\d{6}")  # Ray's folders

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


def _why(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def load_state(path: str | os.PathLike, device="cpu") -> dict:
    """The checkpoint's saved state (tensors and plain data only: `weights_only=True`); a
    one-line DatasetError if `state.pt` is missing, truncated or corrupt."""
    import torch  # as in write_checkpoint

    file = Path(path) / CHECKPOINT_STATE
    problem = _zip_problem(file)
    if problem is not None:
        raise DatasetError(f"{file}: not a loadable checkpoint state ({problem})")
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, OSError...
        raise DatasetError(f"{file}: not a loadable checkpoint state ({_why(e)})") from None
    if not isinstance(state, dict):
        raise DatasetError(f"{file}: not a checkpoint state (a {type(state).__name__})")
    return state


def _zip_problem(file: Path) -> str | None:
    """Why `file` is not a whole torch zip archive (None: it is): a truncated copy has no
    central directory, a corrupted byte fails its member's CRC (torch.load checks neither)."""
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except Exception as e:  # BadZipFile, OSError, EOFError, zlib.error...
        return _why(e)
    return None if bad is None else f"member {bad} is corrupt"


def state_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint folder's `state.pt` cannot be loaded (None: it can): the zip must be
    whole (a truncated copy has no central directory), every member must match its CRC, and
    it must unpickle with `weights_only=True` (memory-mapped: the tensors are not read)."""
    import torch  # as in write_checkpoint

    file = Path(path) / CHECKPOINT_STATE
    problem = _zip_problem(file)
    if problem is not None:
        return f"{file}: {problem}"
    try:
        torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        return f"{file}: {_why(e)}"
    return None


def registered_checkpoints(run_dir: str | os.PathLike) -> set[str] | None:
    """The checkpoint folder names Ray's checkpoint manager registered for the run (None: no
    readable snapshot, e.g. a run Ray Train did not write, or a snapshot torn mid-write)."""
    try:
        data = json.loads((Path(run_dir) / RAY_SNAPSHOT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint_results"), list):
        return None
    results = [*data["checkpoint_results"]]
    results.append(data.get("latest_checkpoint_result"))
    return {
        r["checkpoint_dir_name"]
        for r in results
        if isinstance(r, dict) and isinstance(r.get("checkpoint_dir_name"), str)
    }


def latest_checkpoint(run_dir: str | os.PathLike, kind: str) -> Path | None:
    """The run's newest loadable checkpoint (the most steps; the one a rerun resumes from), if
    any: only those Ray registered when the run has its snapshot, broken ones skipped."""
    registered = registered_checkpoints(run_dir)
    candidates = []
    for meta in Path(run_dir).glob(f"checkpoint_*/{meta_name(kind)}"):
        name = meta.parent.name
        if registered is not None and RAY_NAME.fullmatch(name) and name not in registered:
            continue  # Ray's, still being copied or being deleted (others are written whole)
        try:
            step = int(json.loads(meta.read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        candidates.append((step, meta.parent.name, meta.parent))
    for _, _, folder in sorted(candidates, reverse=True):
        if state_problem(folder) is None:
            return folder
    return None


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


def resolve_checkpoint(source: str | os.PathLike) -> tuple[Path, str]:
    """(checkpoint folder, kind) of a checkpoint folder, or of a run folder: the checkpoint with
    the most steps of its one kind; a one-line DatasetError for anything else."""
    path = Path(source)
    kind = checkpoint_kind(path)
    if kind is None:  # a run folder: its latest checkpoint
        kinds = {checkpoint_kind(p) for p in path.glob("checkpoint_*") if p.is_dir()} - {None}
        if len(kinds) == 1:
            kind = kinds.pop()
            latest = latest_checkpoint(path, kind)
            if latest is None:  # every one unregistered by Ray or broken
                raise DatasetError(
                    f"{path}: no loadable {kind} checkpoint in the run folder (each checkpoint_* "
                    "is incomplete or corrupt); give a checkpoint folder, or train again"
                )
            path = latest
    if kind is None:
        raise DatasetError(
            f"{source}: not a checkpoint folder (no state.pt and <kind>.json) nor a run folder "
            "holding checkpoint_* folders"
        )
    return path, kind
