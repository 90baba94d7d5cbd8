"""One simulated episode: a controller (maybe supervised) in the simulator, its two cameras
written straight into mp4 files, its frames' table returned (`pipelines.synthesis` describes the
columns). `rollout_group` is the Ray task body: several episodes in one task.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.classifier.labels import from_mask
from pipelines.dataset import (
    frames_table,
    table_stats,
)
from pipelines.simulator.controllers import Operator, make_controller
from pipelines.simulator.env import SO101Env
from pipelines.synthesis.config import SynthConfig
from pipelines.synthesis.plan import DEMONSTRATORS, EpisodePlan
from pipelines.synthesis.videos import EpisodeVideos


def stage_progress(stages: np.ndarray, stage_scores: np.ndarray, n_stages: int) -> np.ndarray:
    """stage_progress_gt: k/K + (1/K) * position in stage k (see the module docstring).

    `stages`: the stage index of each frame; `stage_scores`: frames x K completion of each
    stage, in [0, 1].
    """
    stages = np.asarray(stages, dtype=np.int64)
    within = np.asarray(stage_scores, dtype=np.float64)[np.arange(len(stages)), stages]
    return ((stages + np.clip(within, 0.0, 1.0)) / n_stages).astype(np.float32)


def stage_positions(world, start_distance: float) -> tuple[float, float, float]:
    """How far each stage has come, in [0, 1]: the share of the approach distance covered since
    the episode started (reach), of the closure around the cube (grasp), of the height to gain
    (lift); from the simulator's state."""
    _, grasp, lift = world.stage_scores()
    length = start_distance - world.reach_tolerance
    if world.held or length <= 0:
        reach = 1.0
    else:
        reach = min(max((start_distance - world.grasp_distance) / length, 0.0), 1.0)
    return reach, grasp, lift


def rollout_episode(plan: EpisodePlan, cfg: SynthConfig, root: str) -> tuple[dict, pa.Table]:
    """Roll one episode out, writing its videos; returns (episode metadata, frames table).

    The table lacks the global `index` column (written later, when every length is known).
    """
    env = SO101Env(cfg.task, fps=cfg.fps, image_size=cfg.image_size, action_mode="joint")
    controller = make_controller(plan.controller, env, seed=plan.seed)
    policy = Operator(env, controller, seed=plan.seed) if plan.supervised else controller
    obs, info = env.reset(seed=plan.seed)
    world = env.unwrapped.world
    start_distance = world.grasp_distance
    if hasattr(policy, "reset"):
        policy.reset(plan.seed)
    cols: dict[str, list] = {
        k: []
        for k in ("state", "action", "reward", "progress", "stage", "scores", "interv", "shown")
    }
    videos = EpisodeVideos(root, cfg, plan.index)
    succeeded_after = None  # frames recorded when the episode succeeded
    try:
        done = False
        while not done:
            videos.write(obs)
            cols["shown"].append(world.success())  # what the cameras just rendered
            out = policy(obs, info)
            action, interv = out if isinstance(out, tuple) else (out, False)
            cols["state"].append(obs["observation.state"])
            cols["progress"].append(info["progress"])
            cols["stage"].append(info["stage"])
            cols["scores"].append(stage_positions(world, start_distance))
            cols["action"].append(env.joint_targets(action).astype(np.float32))
            obs, reward, terminated, truncated, info = env.step(action)
            cols["reward"].append(reward)
            cols["interv"].append(bool(interv))
            recorded = len(cols["state"])
            if terminated and succeeded_after is None:
                succeeded_after = recorded
            if succeeded_after is None:
                done = truncated
            else:  # keep recording after the success (the env's termination is ignored)
                done = recorded >= succeeded_after + cfg.steps_after_success
    except BaseException:
        videos.abort()
        raise
    videos.close()

    n = len(cols["state"])
    success = succeeded_after is not None
    final_progress = float(info["progress"])
    interv = np.array(cols["interv"], dtype=bool)
    if plan.controller in DEMONSTRATORS:
        data_type = np.full(n, "demo", dtype=object)
    else:
        data_type = np.where(interv, "intervention", "auto").astype(object)
    n_stages = len(world.stages)
    done_col = np.zeros(n, dtype=bool)
    done_col[-1] = True
    table = frames_table(
        {
            "observation.state": np.stack(cols["state"]).astype(np.float32),
            "action": np.stack(cols["action"]).astype(np.float32),
            "timestamp": np.arange(n, dtype=np.float32) / np.float32(cfg.fps),
            "frame_index": np.arange(n),
            "episode_index": np.full(n, plan.index),
            "task_index": np.zeros(n, dtype=np.int64),
            "next.reward": np.array(cols["reward"], dtype=np.float32),
            "next.done": done_col,
            "progress": np.array(cols["progress"], dtype=np.float32),
            "stage_progress_gt": stage_progress(
                np.array(cols["stage"]), np.array(cols["scores"])[:, :n_stages], n_stages
            ),
            "progress_gt": (np.arange(n) / max(n - 1, 1) * final_progress).astype(np.float32),
            "data_type": data_type,
            "complementary_info.is_intervention": interv,
        }
    )
    stats = table_stats(table)
    for k, acc in videos.stats.items():
        stats[k] = acc.result()
    meta = {
        "episode_index": plan.index,
        "length": n,
        "success": success,
        "controller": plan.controller,
        "supervised": plan.supervised,
        "intervention_frames": int(interv.sum()),
        "success_frames": from_mask(plan.index, np.array(cols["shown"])).to_json(),
        "stats": stats,
        "videos": {k: str(v) for k, v in videos.paths.items()},
    }
    return meta, table


def rollout_group(plans: list[EpisodePlan], cfg: SynthConfig, root: str):
    """Ray task body: several episodes; returns (their metadata, their tables)."""
    metas, tables = [], []
    for plan in plans:
        meta, table = rollout_episode(plan, cfg, root)
        metas.append(meta)
        tables.append(table)
    return metas, tables
