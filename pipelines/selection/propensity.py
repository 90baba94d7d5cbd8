"""Seed 000's propensity data: the append-only JSONL log and the dataset's propensity columns.

**The log** `action_propensity_log.jsonl` sits at the dataset root, one JSON object per
recorded frame, with every field the seed lists (`LOG_FIELDS`) plus the candidates'
propensities, the selected candidate and the `collection_id` of the `flywheel collect` run that
wrote it. It is **append-only and never rewritten**: `PropensityLog` opens it with `O_APPEND`
and writes each line with one `write` of the whole line, then fsyncs it (and the folder once,
when it creates the file). A `kill -9` cannot split a `write` to a local file, so after one the
log ends with the last complete line, and a rerun appends after it. A torn last line (power
loss, a full disk) is never repaired: opening the log for appending refuses it (one line naming
the file and line), and so does every reader, because silently skipping it would hide a
frame's propensity.

A rerun after an interrupted collection appends lines whose `collection_id` differs from the
lines the interrupted run left; `meta/collect.json` names the run the dataset's frames came
from, and readers (`read_log(..., collection_id=...)`) keep only its lines.

**The parquet columns** (`validate_propensities`): `action_propensity` must lie in (0, 1];
`candidate_actions` (n x action_dim per frame) must have the n the log gives for the frame.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, fsync_path
from pipelines.selection.selector import MODES

LOG_NAME = "action_propensity_log.jsonl"
COLLECT_META = "meta/collect.json"
LOG_FIELDS = (
    "episode_index",
    "state_id",
    "frame_index",
    "timestamp",
    "is_critical",
    "approval_status",
    "action_propensity",
    "selector_mode",
    "epsilon",
    "resampled",
    "num_candidate_actions",
    "num_already_executed",
)
APPROVALS_IN_LOG = ("approved", "rejected", None)  # the seed: null for non-critical frames


def log_path(root: str | os.PathLike) -> Path:
    return Path(root) / LOG_NAME


def _durable() -> bool:
    return os.environ.get("FLYWHEEL_FSYNC", "1") != "0"


def check_propensity(value, where: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: action_propensity {value!r} is not a number") from None
    if not (math.isfinite(p) and 0.0 < p <= 1.0):
        raise DatasetError(f"{where}: action_propensity {value!r} is not in (0, 1]")
    return p


def check_entry(entry, where: str) -> dict:
    """One log line's object, checked field by field; a DatasetError naming `where` otherwise."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: corrupt log line (not a JSON object)")
    missing = [f for f in LOG_FIELDS if f not in entry]
    if missing:
        raise DatasetError(f"{where}: corrupt log line (no {missing[0]!r})")
    check_propensity(entry["action_propensity"], where)
    if entry["approval_status"] not in APPROVALS_IN_LOG:
        raise DatasetError(
            f"{where}: approval_status {entry['approval_status']!r} is not approved, rejected "
            "or null"
        )
    if entry["selector_mode"] not in (*MODES, None):
        raise DatasetError(
            f"{where}: unknown selector mode {entry['selector_mode']!r} (one of {', '.join(MODES)})"
        )
    n = entry["num_candidate_actions"]
    if not isinstance(n, int) or n < 1:
        raise DatasetError(f"{where}: num_candidate_actions {n!r} is not a count >= 1")
    props = entry.get("candidate_propensities")
    if props is not None and (not isinstance(props, list) or len(props) != n):
        raise DatasetError(
            f"{where}: {len(props) if isinstance(props, list) else props!r} candidate "
            f"propensities for num_candidate_actions {n}"
        )
    return entry


class PropensityLog:
    """Append-only writer (module docstring): `append(entry)` writes and fsyncs one line."""

    def __init__(self, root: str | os.PathLike):
        self.path = log_path(root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = check_complete(self.path)
        created = not self.path.exists()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines = lines
        if created:  # the new file's name, too, must survive a power loss
            try:
                fsync_path(self.path.parent)
            except BaseException:
                self.close()
                raise

    def append(self, entry: dict) -> None:
        data = (json.dumps(entry, allow_nan=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:  # a regular file takes the whole line in one write; loop for safety
            written = os.write(self.fd, view)
            view = view[written:]
        if _durable():
            os.fsync(self.fd)
        self.lines += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PropensityLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_complete(path: Path) -> int:
    """Number of lines of an existing log; a DatasetError if its last line is torn."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        line = data.count(b"\n") + 1
        raise DatasetError(
            f"{path}:{line}: partial last line (the log is never rewritten; move the file "
            "aside to collect again)"
        )
    return data.count(b"\n")


def read_log(path: str | os.PathLike, collection_id: str | None = None) -> list[dict]:
    """Every line of the log (those of `collection_id` only, if given), each checked."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no propensity log")
    entries = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            if not raw.endswith(b"\n"):
                raise DatasetError(f"{where}: partial last line (a torn write)")
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DatasetError(
                    f"{where}: corrupt log line ({e.msg if hasattr(e, 'msg') else e})"
                ) from None
            check_entry(entry, where)
            if collection_id is None or entry.get("collection_id") == collection_id:
                entry["_line"] = number
                entries.append(entry)
    return entries


def collection_id_of(root: str | os.PathLike) -> str | None:
    meta = Path(root) / COLLECT_META
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text())["collection_id"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetError(f"{meta}: unreadable ({e})") from None


def dataset_log(root: str | os.PathLike) -> dict[tuple[int, int], dict]:
    """The dataset's log lines by (episode_index, frame_index), of its own collection run."""
    root = Path(root)
    entries = read_log(log_path(root), collection_id_of(root))
    by_frame = {}
    for e in entries:
        by_frame[(int(e["episode_index"]), int(e["frame_index"]))] = e
    return by_frame


def validate_propensities(
    path: str | os.PathLike,
    propensity: np.ndarray,
    frame_index: np.ndarray,
    episode_index: np.ndarray,
    n_candidates: int | None,
    selected: np.ndarray | None,
    log: dict[tuple[int, int], dict] | None,
) -> None:
    """One file's propensity columns against the rules and the log (module docstring).

    `n_candidates`: the rows of its `candidate_actions`; `selected`: `selected_candidate`.
    """
    for i, p in enumerate(propensity):
        if not (math.isfinite(float(p)) and 0.0 < float(p) <= 1.0):
            raise DatasetError(
                f"{path}: frame {int(frame_index[i])}: action_propensity {float(p)!r} is not "
                "in (0, 1]"
            )
    if log is None or n_candidates is None:
        return
    n = n_candidates
    for i in range(len(propensity)):
        key = (int(episode_index[i]), int(frame_index[i]))
        entry = log.get(key)
        if entry is None:
            raise DatasetError(f"{path}: frame {key[1]} of episode {key[0]} is not in the log")
        where = f"{LOG_NAME}:{entry['_line']}"
        critical = selected is not None and int(selected[i]) >= 0
        if critical and entry["num_candidate_actions"] != n:
            raise DatasetError(
                f"{where}: num_candidate_actions {entry['num_candidate_actions']} but "
                f"{path} has {n} candidate_actions at frame {key[1]}"
            )
        if not np.isclose(float(entry["action_propensity"]), float(propensity[i]), rtol=1e-5):
            raise DatasetError(
                f"{where}: action_propensity {entry['action_propensity']} but {path} has "
                f"{float(propensity[i])} at frame {key[1]}"
            )


def off_policy_approval(entries: list[dict], temperature: float) -> dict:
    """Estimates of the approval rate of the `learned` selector, softmax(scores / T), from the
    first draws at each critical state logged by another selector (whose log carries the same
    scorer's `candidate_scores`, e.g. epsilon_greedy over the trained selector).

    w = pi(a | s) / propensity over the logged candidates; `ips` = mean(w * approved),
    `self_normalized` = sum(w * approved) / sum(w), `unweighted` = the logged approval rate
    (the behaviour selector's, biased as an estimate of the learned one's).
    """
    first = [e for e in entries if e["is_critical"] and not e["resampled"]]
    if not first:
        raise DatasetError("no first draws at critical states in the log")
    weights, approved = [], []
    for e in first:
        scores = e.get("candidate_scores")
        if scores is None:
            raise DatasetError(f"{LOG_NAME}:{e.get('_line', '?')}: no candidate_scores")
        z = np.asarray(scores, dtype=np.float64) / temperature
        pi = np.exp(z - z.max())
        pi /= pi.sum()
        weights.append(pi[int(e["selected_candidate"])] / float(e["action_propensity"]))
        approved.append(e["approval_status"] == "approved")
    w, r = np.array(weights), np.array(approved, dtype=np.float64)
    return {
        "states": len(first),
        "ips": float(np.mean(w * r)),
        "self_normalized": float((w * r).sum() / w.sum()),
        "unweighted": float(r.mean()),
        "weight_mean": float(w.mean()),
        "ess": float(w.sum() ** 2 / (w * w).sum()),
    }


def first_draw_approval(entries: list[dict]) -> float:
    """The share of critical states whose first drawn candidate was approved (on-policy)."""
    first = [e for e in entries if e["is_critical"] and not e["resampled"]]
    if not first:
        raise DatasetError("no first draws at critical states in the log")
    return float(np.mean([e["approval_status"] == "approved" for e in first]))
