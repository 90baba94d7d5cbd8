"""`flywheel collect`'s driver: `run(CollectConfig)` collects the dataset and its propensity log.

Episodes run as Ray tasks in parallel (`rollout.collect_group`; a real arm's one after another
in this process: one arm, and the keyboard); each group's log lines are appended, in episode
order, as soon as it is back; then `meta/collect.json`, and the parquet files and metadata are
written once every length is known (`pipelines.synthesis.write_rollouts`). The job's module
docstring (`pipelines.collect`) describes the dataset, the log and the robots.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from actors.collection.config import CollectConfig, interrupted_collection
from actors.collection.rollout import CollectPlan, collect_group
from pipelines.dataset import DatasetError, atomic_write_json, exclusive_writer
from pipelines.runtime.cluster import check_job_output, cluster_cpus, connect
from pipelines.selection.propensity import COLLECT_META, LOG_NAME, PropensityLog
from pipelines.synthesis import write_rollouts

EPISODE_FIELDS = ("episode_index", "length", "success", "critical_states", "rejections")


def plan_collection(cfg: CollectConfig) -> list[CollectPlan]:
    """Each episode's index and seed (from `cfg.seed`)."""
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.episodes)
    return [CollectPlan(i, int(seeds[i])) for i in range(cfg.episodes)]


@dataclass
class CollectResult:
    root: Path
    episodes: list[dict]
    frames: int
    seconds: float
    collection_id: str
    log_lines: int


def run(cfg: CollectConfig, admin=None, responders: list | None = None) -> CollectResult:
    """Collect the dataset (module docstring); DatasetError for bad options.

    The API: `admin` (anything with `review(attempt) -> bool`, e.g. `APIAdmin(approve)`)
    replaces `--approver`; `responders` (`actors.collection.episode.Responder`s, e.g.
    `APIResponder`) replace `--responders`. Both are sent to the episodes' Ray tasks, so they
    must pickle."""
    t0 = time.time()
    cfg.validate(api_admin=admin is not None, api_responders=responders is not None)
    names = (
        cfg.responder_names()
        if responders is None
        else [getattr(r, "name", type(r).__name__) for r in responders]
    )
    check_job_output(cfg.out, "output dataset")
    root = Path(cfg.out).resolve()
    created = not root.exists()
    # One writer at a time (the lock creates the folder); holding it also removes a killed
    # run's temporaries, never another writer's.
    with exclusive_writer(root, "flywheel collect"):
        cfg.check_out()  # again, now that no other writer can change the folder
        if interrupted_collection(root):
            for sub in ("data", "videos", "meta"):  # the interrupted run's outputs, not the log
                shutil.rmtree(root / sub, ignore_errors=True)
        return _collect(cfg, root, created, names, admin, responders, t0)


def _collect(cfg, root, created, names, admin, responders, t0) -> CollectResult:
    """`run`'s collection, holding the dataset's writer lock."""
    collection_id = uuid.uuid4().hex
    plans = plan_collection(cfg)

    connect(cfg.ray_address)
    if cfg.robot == "real":  # one arm (and the keyboard) here: its episodes one after another
        groups = [np.arange(len(plans))]
        try:
            metas_tables = collect_group(plans, cfg, str(root), collection_id, admin, responders)
        except DatasetError:
            if created:  # the arm or a camera did not open: nothing stays on disk
                shutil.rmtree(root, ignore_errors=True)
            raise
        refs = [[ray.put(part) for part in metas_tables]]
    else:
        n_groups = max(1, min(len(plans), 2 * cluster_cpus()))
        groups = [g for g in np.array_split(np.arange(len(plans)), n_groups) if len(g)]
        task = ray.remote(num_cpus=1, num_returns=2)(collect_group)
        refs = [
            task.remote([plans[i] for i in g], cfg, str(root), collection_id, admin, responders)
            for g in groups
        ]
    metas = []
    with PropensityLog(root) as log:
        for ref in refs:  # in episode order: each group's lines as soon as it is back
            for meta in ray.get(ref[0]):
                for entry in meta.pop("log"):
                    log.append(entry)
                metas.append(meta)
        lines = log.lines
    metas.sort(key=lambda m: m["episode_index"])
    atomic_write_json(
        root / COLLECT_META,
        {
            "collection_id": collection_id,
            "config": cfg.recorded(),
            "responders": names,
            "candidate_count": len(names),
            "admin": cfg.approver if admin is None else type(admin).__name__,
            "episodes": [{k: m[k] for k in EPISODE_FIELDS} for m in metas],
        },
    )
    total = write_rollouts(root, cfg, groups, refs, metas)
    episodes = [{k: v for k, v in m.items() if k not in ("stats", "videos")} for m in metas]
    return CollectResult(root, episodes, total, time.time() - t0, collection_id, lines)


def collection_summary(result: CollectResult) -> list[str]:
    """The lines `flywheel collect` prints under its first."""
    eps = result.episodes
    crit = sum(e["critical_states"] for e in eps)
    rej = sum(e["rejections"] for e in eps)
    return [
        f"  {sum(e['success'] for e in eps)}/{len(eps)} episodes succeeded",
        f"  {crit} critical states, {rej} rejected attempts (undone and resampled)",
        f"  propensity log: {result.root / LOG_NAME} ({result.log_lines} lines)",
    ]
