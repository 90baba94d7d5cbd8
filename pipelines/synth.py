"""`flywheel synth OUT --episodes N`: simulated SO-101 episodes as a LeRobot dataset.

Episodes are rolled out in the embedded simulator (`pipelines.simulator`) by scripted controllers of
graded quality, drawn from `--mix`, as Ray tasks in parallel: each task renders its episodes'
two cameras straight into mp4 files and returns the frames' table; once every episode's length
is known the parquet files are written (the global `index` needs them), then the metadata.
`--format v2.1` (default, kai0's layout) keeps one parquet file and one video per episode and
camera; `--format v3.0` (LeRobot >= 0.4) packs consecutive episodes into files chunked by size:
the per-episode videos are concatenated (remuxed, not re-encoded) into each camera's files, one
Ray task per output file.

Columns per frame: `observation.state` (6 joints: degrees, gripper 0-100), `action` (the 6
joint targets sent), videos `observation.images.front` / `.wrist`, `timestamp`, `frame_index`,
`episode_index`, `index`, `task_index`, `next.reward` (1.0 on the step that succeeds),
`next.done`, `progress` (the simulator's task progress: it drops when the arm backs off or the
cube slips), `stage_progress_gt`, `progress_gt`, `data_type` and
`complementary_info.is_intervention`.

* `stage_progress_gt` follows the stage-advantage definition k/K + (1/K) * (position in
  stage / stage length) over the task's K stages (reach, grasp[, lift]), k being the stage the
  simulator is in, with the position measured by the simulator along the stage itself: the
  share of the approach distance covered since the episode started (reach; so every episode
  starts at 0), of the closure around the cube (grasp), of the height to gain (lift). Not by
  elapsed frames: a pause advances the frame count, not the task, and nothing in an image tells
  time (on the default mix a frame-count ramp per stage correlated only 0.58, Spearman, with the
  simulator's progress). It drops when the arm backs off; a failed episode gets the stage it
  reached and how far into it it got, never 1.
* `progress_gt` is the episode's time progress frame/(n-1) scaled by the progress it reached
  in the end (1 for a success).
* `data_type`: `demo` for the scripted demonstrators (expert, hesitant); `auto` for the
  controllers that stand in for autonomous policies (noisy, failing), `intervention` on the
  frames where the simulated operator took over from one (`--operator`: the share of those
  episodes it supervises). `complementary_info.is_intervention` marks the same frames.

`--steps-after-success N` keeps recording N frames after the step that succeeds (seed 002's
`number_of_steps_after_success`; the env would end the episode there, so without it no frame
shows the success itself) and writes the success-frames CSV beside the dataset,
`<OUT>_success_frames.csv` (`pipelines.classifier.labels`): a frame is a success frame when the
world its cameras rendered was in the success state, straight from the simulator. Those frames
also carry `next.reward` 1 while the success lasts.

The same `--seed` gives identical parquet files and identical decoded video frames.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.classifier.labels import (
    EpisodeLabels,
    from_mask,
    success_csv_path,
    write_success_csv,
)
from pipelines.dataset import (
    V21,
    V30,
    DatasetError,
    ImageStats,
    VideoWriter,
    check_frame_size,
    default_codec_note,
    episode_data_path,
    episode_video_path,
    features_of,
    frames_table,
    new_info,
    new_info_v30,
    resolve_video_codec,
    table_stats,
    temp_path_for,
    video_feature,
    write_episodes,
    write_meta,
    write_parquet,
)
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError, check_job_output

DEFAULT_MIX = "expert=0.4,hesitant=0.3,noisy=0.2,failing=0.1"
DEMONSTRATORS = ("expert", "hesitant")  # data_type "demo"; the others stand in for policies
TASK_TEXT = {
    "reach_grasp": "reach and grasp the red cube",
    "pick_lift": "pick up the red cube and lift it",
}
CAMERAS = ("observation.images.front", "observation.images.wrist")


@dataclass
class SynthConfig:
    out: str
    episodes: int
    seed: int = 0
    task: str = "reach_grasp"
    task_text: str | None = None
    mix: str = DEFAULT_MIX
    operator: float = 0.5
    fps: int = 10
    image_size: int = 128
    steps_after_success: int = 0
    vcodec: str | None = None  # None: av1 where PyAV has SVT-AV1, else h264
    format: str = V21
    ray_address: str | None = None

    @property
    def text(self) -> str:
        return self.task_text or TASK_TEXT[self.task]

    def validate(self) -> dict[str, float]:
        """Check the options (and resolve `task`); returns the parsed mix.

        `task` names the simulated task (`reach_grasp`, `pick_lift`, or the spelled-out
        "reach-and-grasp", "pick_and_lift", ...); anything else is taken as the dataset's task
        text for a reach-and-grasp dataset.
        """
        if self.episodes < 1:
            raise DatasetError(f"--episodes {self.episodes}: at least 1")
        name = self.task.strip().lower().replace("-", "_").replace("_and_", "_")
        if name in TASK_TEXT:
            self.task = name
        elif self.task.strip() and self.task_text is None:
            self.task, self.task_text = "reach_grasp", self.task.strip()
        else:
            raise DatasetError(f"--task {self.task!r}: one of {sorted(TASK_TEXT)} or a task text")
        if self.task_text is not None and not self.task_text.strip():
            raise DatasetError("--task-text: empty")
        if not 1 <= self.fps <= 120:
            raise DatasetError(f"--fps {self.fps}: between 1 and 120")
        if not 16 <= self.image_size <= 1024:
            raise DatasetError(f"--image-size {self.image_size}: between 16 and 1024")
        try:
            self.vcodec = resolve_video_codec(self.vcodec)
        except DatasetError as e:
            raise DatasetError(f"--vcodec: {e}") from None
        try:
            check_frame_size(self.vcodec, self.image_size, self.image_size)
        except DatasetError as e:
            raise DatasetError(f"--image-size {self.image_size}: {e}") from None
        if not 0 <= self.operator <= 1:
            raise DatasetError(f"--operator {self.operator}: a share between 0 and 1")
        if not 0 <= self.steps_after_success <= 1000:
            raise DatasetError(
                f"--steps-after-success {self.steps_after_success}: between 0 and 1000"
            )
        if self.format not in (V21, V30):
            raise DatasetError(f"--format {self.format!r}: {V21} or {V30}")
        out = Path(self.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DatasetError(f"{out}: exists and is not an empty folder (nothing was written)")
        csv_path = success_csv_path(out)
        if self.steps_after_success and csv_path.exists():
            raise DatasetError(f"{csv_path}: exists (nothing was written)")
        return parse_mix(self.mix)


def parse_mix(text: str) -> dict[str, float]:
    """'expert=0.4,hesitant=0.3' -> {'expert': 0.4, 'hesitant': 0.3}, weights normalised."""
    from pipelines.simulator.controllers import CONTROLLERS

    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in CONTROLLERS:
            raise DatasetError(
                f"--mix {text!r}: {part.strip()!r} is not <controller>=<weight> with a "
                f"controller in {sorted(CONTROLLERS)}"
            )
        try:
            w = float(weight)
        except ValueError:
            raise DatasetError(f"--mix {text!r}: weight {weight!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise DatasetError(f"--mix {text!r}: weight of {name} must be >= 0")
        mix[name] = mix.get(name, 0.0) + w
    total = sum(mix.values())
    if total <= 0:
        raise DatasetError(f"--mix {text!r}: the weights add up to 0")
    return {k: v / total for k, v in mix.items()}


@dataclass(frozen=True)
class EpisodePlan:
    index: int
    seed: int
    controller: str
    supervised: bool  # the simulated operator watches and takes over when it drifts


def plan_episodes(cfg: SynthConfig, mix: dict[str, float]) -> list[EpisodePlan]:
    """Which controller rolls out which episode, with which seed; a function of `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    names = list(mix)
    picks = rng.choice(len(names), size=cfg.episodes, p=[mix[n] for n in names])
    watch = rng.random(cfg.episodes) < cfg.operator
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.episodes)
    return [
        EpisodePlan(
            index=i,
            seed=int(seeds[i]),
            controller=names[picks[i]],
            supervised=bool(watch[i]) and names[picks[i]] not in DEMONSTRATORS,
        )
        for i in range(cfg.episodes)
    ]


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
    from pipelines.simulator import SO101Env
    from pipelines.simulator.controllers import Operator, make_controller

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
    image_stats = {k: ImageStats() for k in CAMERAS}
    size = cfg.image_size
    videos = {k: episode_video(root, cfg.format, plan.index, k) for k in CAMERAS}
    writers = {k: VideoWriter(videos[k], cfg.fps, size, size, cfg.vcodec) for k in CAMERAS}
    succeeded_after = None  # frames recorded when the episode succeeded
    try:
        done = False
        while not done:
            for k, w in writers.items():
                img = obs[k]
                w.write(img)
                image_stats[k].add(img)
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
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()

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
    for k, acc in image_stats.items():
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
        "videos": {k: str(v) for k, v in videos.items()},
    }
    return meta, table


def episode_video(root: str, version: str, episode: int, key: str) -> Path:
    """Where an episode's video is written: its place (v2.1), or a temporary that the v3.0
    writer concatenates into the camera's shared video files."""
    if version == V21:
        return episode_video_path(root, episode, key)
    return temp_path_for(Path(root) / "videos" / key / f"episode_{episode:06d}.mp4")


def rollout_group(plans: list[EpisodePlan], cfg: SynthConfig, root: str):
    """Ray task body: several episodes; returns (their metadata, their tables)."""
    metas, tables = [], []
    for plan in plans:
        meta, table = rollout_episode(plan, cfg, root)
        metas.append(meta)
        tables.append(table)
    return metas, tables


def with_index(table: pa.Table, first: int) -> pa.Table:
    """The episode's table with its global `index` column (after `episode_index`)."""
    index = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
    return table.add_column(table.column_names.index("episode_index") + 1, "index", index)


def write_tables(root: str, items: list[tuple[int, int]], tables: list[pa.Table]) -> int:
    """Ray task body: write v2.1 episode tables with their global `index`."""
    for (episode, first), table in zip(items, tables, strict=True):
        write_parquet(episode_data_path(root, episode), with_index(table, first))
    return len(items)


@dataclass
class SynthResult:
    root: Path
    episodes: list[dict]
    frames: int
    seconds: float
    labels: Path | None = None  # the success-frames CSV (with --steps-after-success)


def run(cfg: SynthConfig, out=print) -> SynthResult:
    """Synthesize the dataset (see the module docstring); DatasetError for bad options."""
    t0 = time.time()
    mix = cfg.validate()
    check_job_output(cfg.out, "output dataset")
    plans = plan_episodes(cfg, mix)
    root = Path(cfg.out).resolve()
    root.mkdir(parents=True, exist_ok=True)

    import ray

    from pipelines.runtime.cluster import cluster_cpus, connect

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


def write_rollouts(root: Path, cfg, groups: list, refs: list, metas: list[dict]) -> int:
    """Write the rolled-out episodes' parquet files and metadata; returns the frame count.

    `refs[g]` are the (metas, tables) object refs of the Ray task that rolled out the
    episodes of `groups[g]`; `metas` their metadata in episode order (with `length`, `stats`
    and `videos`). `cfg` gives format, fps, image_size, vcodec and text (also `flywheel
    collect`'s writer).
    """
    import ray

    firsts = np.r_[0, np.cumsum([m["length"] for m in metas])[:-1]].tolist()
    size = cfg.image_size
    total = int(sum(m["length"] for m in metas))
    vfeatures = {k: video_feature(size, size, cfg.fps, cfg.vcodec) for k in CAMERAS}
    if cfg.format == V30:
        tables = [t for group in ray.get([r[1] for r in refs]) for t in group]
        tables = [with_index(t, int(first)) for t, first in zip(tables, firsts, strict=True)]
        info = new_info_v30(
            fps=cfg.fps,
            features=features_of(tables[0], vfeatures),
            total_episodes=0,
            total_frames=0,
            total_tasks=0,
            robot_type="so101_follower",
        )
        write_episodes(
            root,
            tables=tables,
            videos={k: [Path(m["videos"][k]) for m in metas] for k in CAMERAS},
            stats=[m["stats"] for m in metas],
            tasks={0: cfg.text},
            episode_tasks=[[cfg.text]] * len(metas),
            info=info,
            map_files=_ray_map,
        )
    else:
        writer = ray.remote(num_cpus=1)(write_tables)
        ray.get(
            [
                writer.remote(str(root), [(int(i), int(firsts[i])) for i in g], tables_ref)
                for g, (_, tables_ref) in zip(groups, refs, strict=True)
            ]
        )
        import pyarrow.parquet as pq

        features = features_of(pq.read_schema(episode_data_path(root, 0)).empty_table(), vfeatures)
        info = new_info(
            fps=cfg.fps,
            features=features,
            total_episodes=len(metas),
            total_frames=total,
            total_tasks=1,
            robot_type="so101_follower",
        )
        write_meta(
            root,
            info=info,
            tasks={0: cfg.text},
            episodes=[
                {"episode_index": m["episode_index"], "tasks": [cfg.text], "length": m["length"]}
                for m in metas
            ],
            episodes_stats={m["episode_index"]: m["stats"] for m in metas},
        )
    return total


def _ray_map(fn, jobs: list) -> list:
    """`map` over Ray tasks, one per job (the v3.0 writer's per-file writes)."""
    import ray

    task = ray.remote(num_cpus=1)(fn)
    return ray.get([task.remote(job) for job in jobs])


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


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="new dataset folder (must not exist, or be empty)")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--task",
        default="reach_grasp",
        help="the simulated task, reach_grasp (default) or pick_lift; any other text is the "
        "task text of a reach_grasp dataset",
    )
    p.add_argument(
        "--task-text", default=None, help="the dataset's task text (default: the task's own)"
    )
    p.add_argument("--mix", default=DEFAULT_MIX, help=f"controller shares (default {DEFAULT_MIX})")
    p.add_argument(
        "--operator",
        type=float,
        default=0.5,
        help="share of noisy/failing episodes supervised by the operator (0.5)",
    )
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument(
        "--steps-after-success",
        type=int,
        default=0,
        metavar="N",
        help="keep recording N frames after the success and write <OUT>_success_frames.csv "
        "(the reward classifier's labels)",
    )
    p.add_argument(
        "--vcodec",
        default=None,
        help="video codec: av1 (the default where PyAV has SVT-AV1, as LeRobot's), h264 or mpeg4",
    )
    p.add_argument(
        "--format",
        default=V21,
        help=f"LeRobot layout: {V21} (one file per episode, default) or {V30} (as LeRobot >= 0.4 "
        "records: episodes packed into files chunked by size)",
    )
    p.add_argument("--ray-address", default=None)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel synth") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = SynthConfig(**{k: v for k, v in vars(args).items()})
    if cfg.vcodec is None and (note := default_codec_note()):
        print(f"{prog}: note: {note}", file=sys.stderr)
    try:
        result = run(cfg)
    except (DatasetError, ClusterError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    n = len(result.episodes)
    print(
        f"Synthesized {n} episodes, {result.frames} frames in {result.seconds:.1f} s "
        f"({n / result.seconds:.2f} episodes/s, {result.frames / result.seconds:.0f} frames/s)"
    )
    for line in summary_lines(result):
        print(line)
    print(f"Dataset: {result.root}")
    if result.labels is not None:
        print(f"Success frames: {result.labels}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.synth"))
