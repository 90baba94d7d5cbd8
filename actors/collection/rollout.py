"""One collected episode as the dataset's rows, videos and propensity-log lines.

`collect_episode` runs `run_collection_episode` on the episode's env (`sources.open_env`), writes
its two cameras' videos, and returns its metadata (with its log lines) and its table: synth's
columns (`pipelines.synthesis`), `action` the executed action, plus seed 000's
`action_propensity`, `selector_mode`, `approval_status`, `candidate_actions` and
`selected_candidate`. `collect_group` is the Ray task body: several episodes.

The episode's outcome (`episode_success` in the episodes metadata, written by
`pipelines.synthesis.write_rollouts`) is the simulator's success, or the emulated arm's coupled
simulator's; a real arm declares no success, so its episodes have no outcome (None; add them
with `flywheel outcomes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.collection.config import CollectConfig, parse_approver
from actors.collection.episode import CriticalRule, run_collection_episode
from actors.collection.sources import PolicyAction, make_responders, make_selector, open_env
from pipelines.dataset import EPISODE_SUCCESS, frames_table, table_stats
from pipelines.synthesis import EpisodeVideos, stage_positions, stage_progress


@dataclass(frozen=True)
class CollectPlan:
    index: int
    seed: int


def collect_episode(
    plan: CollectPlan,
    cfg: CollectConfig,
    root: str,
    collection_id: str,
    admin=None,
    responders: list | None = None,
):
    """Roll one episode out, writing its videos; returns (metadata with log lines, table).

    `admin` / `responders`: given through the API (`run`), else from `--approver` /
    `--responders`."""
    env, sim_env = open_env(cfg, plan.seed)
    try:
        if responders is None:
            responders = make_responders(cfg, sim_env, plan.seed)
        driver = PolicyAction(cfg.driver, sim_env, plan.seed)
        selector = make_selector(cfg, sim_env, plan.seed)
        world = env.unwrapped.world  # None on a real arm
        start = {"distance": None}

        def positions(w):
            if start["distance"] is None:
                start["distance"] = w.grasp_distance
            return stage_positions(w, start["distance"])

        outcome = run_collection_episode(
            env,
            driver,
            responders,
            selector,
            CriticalRule.parse(cfg.critical),
            admin if admin is not None else parse_approver(cfg.approver, cfg.robot),
            plan.seed,
            stage_positions=positions,
        )
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    frames = outcome.frames
    videos, image_stats = write_videos(frames, plan.index, cfg, root)
    table = frames_table(
        episode_columns(frames, plan.index, cfg, world, outcome.final_progress),
        {
            "candidate_actions": {
                "dtype": "float32",
                "shape": list(frames[0].candidates.shape),
                "names": None,
            }
        },
    )
    stats = table_stats(table)
    for k, acc in image_stats.items():
        stats[k] = acc.result()
    log = [log_entry(plan.index, i, f, cfg, collection_id) for i, f in enumerate(frames)]
    meta = {
        "episode_index": plan.index,
        "length": len(frames),
        "success": outcome.success,
        EPISODE_SUCCESS: outcome.success if world is not None else None,
        "critical_states": outcome.critical_states,
        "rejections": outcome.rejections,
        "stats": stats,
        "videos": {k: str(v) for k, v in videos.items()},
        "log": log,
    }
    return meta, table


def write_videos(frames: list, episode: int, cfg: CollectConfig, root: str):
    """Each camera's video of the episode; (their paths, their image statistics)."""
    videos = EpisodeVideos(root, cfg, episode)
    try:
        for f in frames:
            videos.write(f.observation)
    except BaseException:
        videos.abort()
        raise
    videos.close()
    return videos.paths, videos.stats


def episode_columns(
    frames: list, episode: int, cfg: CollectConfig, world, final_progress: float
) -> dict:
    """The episode table's columns (module docstring)."""
    n = len(frames)
    done = np.zeros(n, dtype=bool)
    done[-1] = True
    return {
        "observation.state": np.stack([f.observation["observation.state"] for f in frames]),
        "action": np.stack([f.action for f in frames]).astype(np.float32),
        "timestamp": np.arange(n, dtype=np.float32) / np.float32(cfg.fps),
        "frame_index": np.arange(n),
        "episode_index": np.full(n, episode),
        "task_index": np.zeros(n, dtype=np.int64),
        "next.reward": np.array([f.reward for f in frames], dtype=np.float32),
        "next.done": done,
        **ground_truth(frames, world, final_progress),
        "data_type": np.full(n, "auto", dtype=object),
        "complementary_info.is_intervention": np.zeros(n, dtype=bool),
        "action_propensity": np.array([f.propensity for f in frames], dtype=np.float32),
        "selector_mode": np.full(n, cfg.selection.selector, dtype=object),
        "approval_status": np.array([f.approval_status for f in frames], dtype=object),
        "candidate_actions": np.stack([f.candidates for f in frames]).astype(np.float32),
        "selected_candidate": np.array([f.selected_candidate for f in frames], np.int64),
    }


def ground_truth(frames: list, world, final_progress: float) -> dict:
    """The simulator's progress columns (synth's); none on a real arm, which has no world."""
    if world is None:
        return {}
    n, n_stages = len(frames), len(world.stages)
    return {
        "progress": np.array([f.progress for f in frames], dtype=np.float32),
        "stage_progress_gt": stage_progress(
            np.array([f.stage for f in frames]),
            np.array([f.stage_scores for f in frames])[:, :n_stages],
            n_stages,
        ),
        "progress_gt": (np.arange(n) / max(n - 1, 1) * final_progress).astype(np.float32),
    }


def log_entry(episode: int, frame_index: int, frame, cfg: CollectConfig, collection_id: str):
    """The propensity log's line for one frame: the seed's fields first, then ours."""
    meta = frame.log
    return {
        "episode_index": episode,
        "state_id": frame.state_id,
        "frame_index": frame_index,
        "timestamp": frame_index / cfg.fps,
        "is_critical": frame.is_critical,
        "approval_status": None if frame.approval_status == "none" else frame.approval_status,
        "action_propensity": frame.propensity,
        "selector_mode": meta["selector_mode"],
        "epsilon": meta["epsilon"],
        "resampled": meta["resampled"],
        "num_candidate_actions": meta["num_candidate_actions"],
        "num_already_executed": meta["num_already_executed"],
        "candidate_propensities": meta["candidate_propensities"],
        "candidate_scores": meta.get("candidate_scores"),
        "selected_candidate": frame.selected_candidate,
        "unconditional_propensity": meta.get("unconditional_propensity", 1.0),
        "already_executed": meta.get("already_executed", []),
        "collection_id": collection_id,
    }


def collect_group(
    plans: list[CollectPlan],
    cfg: CollectConfig,
    root: str,
    collection_id: str,
    admin=None,
    responders: list | None = None,
):
    """Ray task body: several episodes; returns (their metadata, their tables)."""
    metas, tables = [], []
    for plan in plans:
        meta, table = collect_episode(plan, cfg, root, collection_id, admin, responders)
        metas.append(meta)
        tables.append(table)
    return metas, tables
