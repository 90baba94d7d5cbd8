"""What the labeling tests share: dataset snapshots, the CLI, labels from the pure math."""

import hashlib
from pathlib import Path

import numpy as np

from pipelines import label
from pipelines.dataset import LOCK, LeRobotDataset
from pipelines.dataset.atomic import is_temp
from pipelines.labeling import advantage as adv

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "datasets"


def snapshot(root: Path, temps: bool = True) -> dict[str, str]:
    """Every file's hash (`temps=False`: leaving out what a killed writer leaves of its own
    bookkeeping, the temporaries it staged and its writer lock's file)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (temps or not (is_temp(p.name) or p.name == LOCK))
    }


def run_cli(argv, capsys):
    code = label.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def expected_labels(root: Path, K: int, threshold: float, chunk: int = 50) -> dict[int, np.ndarray]:
    """Labels computed straight from the pure functions, episode by episode."""
    ds = LeRobotDataset(root)
    eps = {e: ds.read_episode(e, ["progress", "stage_progress_gt"]) for e in ds.episode_indices}
    rewards = {e: adv.episode_rewards(t["progress"].to_numpy(), chunk) for e, t in eps.items()}
    stages = {e: adv.frame_stages(t["stage_progress_gt"].to_numpy(), K) for e, t in eps.items()}
    allr, alls = np.concatenate(list(rewards.values())), np.concatenate(list(stages.values()))
    dtype = np.float64 if K == 1 else np.float32
    cuts = {
        s: adv.compute_cuts(np.sort(allr[alls == s].astype(dtype)), "binary", threshold, 10)
        for s in range(K)
    }
    return {
        e: adv.assign_labels(rewards[e], stages[e].astype(np.int64), cuts, "binary", 10, K == 1)
        for e in eps
    }
