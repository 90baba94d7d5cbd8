"""What every Ray Train job in Flywheel shares: checkpoints, resuming, the trainer, errors.

Checkpoints are folders holding `state.pt` (torch: model, optimizer, step, ...) and one JSON
file named after the checkpoint's kind (`estimator.json`, `policy.json`, `classifier.json`,
...) with its config; the kind is how a command refuses a checkpoint of another model.
A run lives in `<storage>/<name>/checkpoint_*` (Ray Train V2): rerunning the same name resumes
from its latest checkpoint, and `check_resume` refuses a rerun that would train another model
under the same name (it would crash while loading the state, or silently mix models).

`fit` builds the `TorchTrainer` (DDP over `workers`) after checking that the cluster has the
CPUs and GPUs asked for, since Ray would otherwise wait for them forever (a sweep's trial adds
Train callbacks through it); `dataset_error`
finds a `DatasetError` raised on a worker inside Ray Train's error, so that it reaches the
user as one line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError

CHECKPOINT_STATE = "state.pt"


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
    import torch

    folder = Path(folder)
    torch.save(state, folder / CHECKPOINT_STATE)
    (folder / meta_name(kind)).write_text(json.dumps(meta, indent=2))


def load_state(path: str | os.PathLike, device="cpu") -> dict:
    import torch

    return torch.load(Path(path) / CHECKPOINT_STATE, map_location=device)


def resume_in_worker(device="cpu"):
    """Inside a Ray Train worker: (this run's latest checkpoint, its saved state), or
    (None, None) on a fresh run. Every training loop resumes through this."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return None, None
    with checkpoint.as_directory() as d:
        return checkpoint, load_state(d, device)


def report_if_finished(start: int, steps: int, checkpoint, rank: int) -> bool:
    """A finished run started again (`start >= steps`): report its state unchanged, with its
    checkpoint from rank 0, and say so (the loop then has nothing to train)."""
    if start < steps:
        return False
    import ray.train

    ray.train.report(
        {"step": start, "resumed_from": start}, checkpoint=checkpoint if rank == 0 else None
    )
    return True


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


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0.

    A function of the step (not a scheduler's state), so a run resumed with more `--steps`
    simply continues on the longer schedule.
    """
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


def fit(
    train_loop: Callable[[dict], None],
    loop_config: dict,
    *,
    workers: int,
    cpus_per_worker: int,
    gpus_per_worker: float,
    name: str,
    storage: str | os.PathLike,
    max_failures: int,
    keep: int = 2,
    callbacks: list | None = None,
):
    """Run `train_loop` on `workers` DDP workers (Ray Train V2); returns Ray's Result.

    The cluster must be connected. Asking for more CPUs or GPUs than it has is a ClusterError
    (unless FLYWHEEL_WAIT_FOR_RESOURCES=1, for autoscaling clusters). `callbacks`: extra Ray
    Train callbacks, such as the `TuneReportCallback` a sweep's trial passes so that Tune sees
    the run's reports.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.runtime.cluster import require

    resources = {"CPU": cpus_per_worker}
    require("CPU", workers * cpus_per_worker, f"--workers {workers} x {cpus_per_worker} CPU")
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
        require(
            "GPU",
            workers * gpus_per_worker,
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g}",
        )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage).resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep),
            callbacks=list(callbacks or []),
        ),
    )
    return trainer.fit()


def split_episodes(episodes: list[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) episodes; the held-out share drawn with `seed`."""
    episodes = sorted(episodes)
    n_held = int(round(len(episodes) * holdout)) if holdout > 0 else 0
    if len(episodes) > 1:
        n_held = min(max(n_held, 1 if holdout > 0 else 0), len(episodes) - 1)
    held = set(np.random.default_rng(seed).choice(episodes, size=n_held, replace=False).tolist())
    return [e for e in episodes if e not in held], sorted(held)
