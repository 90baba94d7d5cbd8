"""`run(SynthConfig)`: the episodes planned, rolled out as Ray tasks, written as a dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from pipelines.classifier.labels import EpisodeLabels, success_csv_path, write_success_csv
from pipelines.runtime.cluster import check_job_output, cluster_cpus, connect
from pipelines.synthesis.config import SynthConfig
from pipelines.synthesis.plan import plan_episodes
from pipelines.synthesis.rollout import rollout_group
from pipelines.synthesis.writer import write_rollouts


@dataclass
class SynthResult:
    root: Path
    episodes: list[dict]
    frames: int
    seconds: float
    labels: Path | None = None  # the success-frames CSV (with --steps-after-success)


def run(cfg: SynthConfig, out=print) -> SynthResult:
    """Synthesize the dataset (`pipelines.synth`'s docstring); DatasetError for bad options."""
    t0 = time.time()
    mix = cfg.validate()
    check_job_output(cfg.out, "output dataset")
    plans = plan_episodes(cfg, mix)
    root = Path(cfg.out).resolve()
    root.mkdir(parents=True, exist_ok=True)

    connect(cfg.ray_address)
    n_groups = max(1, min(len(plans), 2 * cluster_cpus()))
    groups = [g for g in np.array_split(np.arange(len(plans)), n_groups) if len(g)]
    task = ray.remote(num_cpus=1, num_returns=2)(rollout_group)
    refs = [task.remote([plans[i] for i in g], cfg, str(root)) for g in groups]
    metas = [m for group_metas in ray.get([r[0] for r in refs]) for m in group_metas]
    metas.sort(key=lambda m: m["episode_index"])
    total = write_rollouts(root, cfg, groups, refs, metas)
    labels = None
    if cfg.steps_after_success:
        labels = write_success_csv(
            success_csv_path(root),
            [EpisodeLabels.from_json(m["episode_index"], m["success_frames"]) for m in metas],
        )
    dropped = ("stats", "videos", "success_frames")
    episodes = [{k: v for k, v in m.items() if k not in dropped} for m in metas]
    return SynthResult(root, episodes, total, time.time() - t0, labels)


def summary_lines(result: SynthResult) -> list[str]:
    lines = []
    by = {}
    for m in result.episodes:
        by.setdefault(m["controller"], []).append(m)
    for name, eps in sorted(by.items()):
        ok = [e["length"] for e in eps if e["success"]]
        mean = f", mean length of successes {np.mean(ok):.0f}" if ok else ""
        watched = sum(e["supervised"] for e in eps)
        lines.append(
            f"  {name}: {len(eps)} episodes, {len(ok)} succeeded{mean}"
            + (f", {watched} supervised by the operator" if watched else "")
        )
    return lines
