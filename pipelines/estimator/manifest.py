"""The manifest of an estimate's output folder: what its files were computed from.

`<dataset>/data_<VARIANT>_<step>/manifest.json` names the checkpoint (its resolved path and
the size and sha256 of each of its files), the variant and step, the data folder read and the
size of each of its data files, and for recap the N of the advantage, c_fail, the T_max used
per task and the outcomes (their source, counts and digest). `prepare_output` compares it with
the folder's: an equal manifest keeps the files already written (an interrupted pass resumes);
a missing or different one means they were computed from something else, so they are removed
before the new manifest is written (atomically) and everything is computed again. Run it under
the dataset's writer lock.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipelines.dataset import LeRobotDataset, atomic_write_json, fsync_path, make_folders

MANIFEST = "manifest.json"


def file_fingerprint(path: Path) -> dict:
    """{"size", "sha256"} of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def estimate_manifest(
    ds: LeRobotDataset, checkpoint: Path, meta: dict, data_dir: str, recap: dict | None
) -> dict:
    """The manifest of an estimate (module docstring); `recap`: the recap section or None."""
    checkpoint = Path(checkpoint).resolve()
    files = sorted(p for p in checkpoint.iterdir() if p.is_file())
    manifest = {
        "checkpoint": {
            "path": str(checkpoint),
            "files": {p.name: file_fingerprint(p) for p in files},
        },
        "variant": meta["variant"],
        "step": int(meta["step"]),
        "data_dir": data_dir,
        "source_files": {ds.relative(p): p.stat().st_size for p in ds.data_files(data_dir)},
    }
    if recap is not None:
        manifest["recap"] = recap
    return manifest


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None (none there, or unreadable: then it is no manifest)."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def manifest_matches(ds: LeRobotDataset, out_dir: str, manifest: dict) -> bool:
    """Whether `ds.root/out_dir` holds `manifest` (then its files were computed from it)."""
    return read_manifest(ds.root / out_dir) == json.loads(json.dumps(manifest))


def prepare_output(ds: LeRobotDataset, out_dir: str, manifest: dict) -> bool:
    """Make `ds.root/out_dir` hold `manifest` and only files computed from it: True when its
    manifest was already this one (files there are kept), False when the folder's files were
    removed (computed from something else, or of unknown origin) and the manifest written."""
    folder = ds.root / out_dir
    if manifest_matches(ds, out_dir, manifest):
        return True
    # the old manifest goes first: a kill between the steps leaves no manifest, never a new
    # manifest beside stale files
    if (folder / MANIFEST).exists():
        (folder / MANIFEST).unlink()
        fsync_path(folder)
    stale = ds.data_files(out_dir)
    for path in stale:
        path.unlink()
    for parent in sorted({p.parent for p in stale}):
        fsync_path(parent)
    make_folders(folder)
    atomic_write_json(folder / MANIFEST, manifest)
    return False
