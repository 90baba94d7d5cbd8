"""Synthesis: simulated SO-101 episodes as a LeRobot dataset (`flywheel synth`'s library).

    config   SynthConfig (the options and their checks), parse_mix, DEFAULT_MIX
    plan     EpisodePlan, plan_episodes: controller, seed and operator of every episode
    rollout  rollout_episode / rollout_group (the Ray task body), stage_progress
    videos   EpisodeVideos: an episode's camera videos (also `flywheel collect`'s)
    writer   write_rollouts (also `flywheel collect`'s), write_tables, with_index
    driver   run(SynthConfig) -> SynthResult, summary_lines

Episodes are rolled out in the embedded simulator (`pipelines.simulator`) by scripted controllers of
graded quality, drawn from `--mix`, as Ray tasks in parallel: each task renders its episodes'
two cameras straight into mp4 files and returns the frames' table; once every episode's length
is known the parquet files are written (the global `index` needs them), then the metadata.
`--format v3.0` (the default, as LeRobot >= 0.4 records) packs consecutive episodes into files
chunked by size: the per-episode videos are concatenated (remuxed, not re-encoded) into each
camera's files, one Ray task per output file; `--format v2.1` (kai0's and openpi's layout)
keeps one parquet file and one video per episode and camera.

Columns per frame: `observation.state` (6 joints: degrees, gripper 0-100, named and given their
units in info.json, `pipelines.dataset.units`), `action` (the 6 joint targets sent), videos
`observation.images.front` / `.wrist`, `timestamp`, `frame_index`, `episode_index`, `index`,
`task_index`, `next.reward` (1.0 on the step that succeeds), `next.done`, `progress` (the
simulator's task progress: it drops when the arm backs off or the cube slips),
`stage_progress_gt`, `progress_gt`, `data_type` and `complementary_info.is_intervention`.

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

Each episode's outcome, `episode_success` in the episodes metadata (v2.1 `meta/episodes.jsonl`,
v3.0 a `meta/episodes/` column; `pipelines.dataset.outcomes`), is whether the simulator saw it
succeed: what `flywheel train-estimator --variant recap` learns its value from.

`--steps-after-success N` keeps recording N frames after the step that succeeds (seed 002's
`number_of_steps_after_success`; the env would end the episode there, so without it no frame
shows the success itself) and writes the success-frames CSV beside the dataset,
`<OUT>_success_frames.csv` (`pipelines.classifier.labels`): a frame is a success frame when the
world its cameras rendered was in the success state, straight from the simulator. Those frames
also carry `next.reward` 1 while the success lasts.

The same `--seed` gives identical parquet files and identical decoded video frames.
"""

from pipelines.synthesis.config import DEFAULT_MIX, DatasetLayout, SynthConfig, parse_mix
from pipelines.synthesis.driver import SynthResult, run, summary_lines
from pipelines.synthesis.plan import DEMONSTRATORS, EpisodePlan, plan_episodes
from pipelines.synthesis.rollout import (
    rollout_episode,
    rollout_group,
    stage_positions,
    stage_progress,
)
from pipelines.synthesis.videos import EpisodeVideos, episode_video
from pipelines.synthesis.writer import with_index, write_rollouts, write_tables

__all__ = [
    "DEFAULT_MIX",
    "DEMONSTRATORS",
    "DatasetLayout",
    "EpisodePlan",
    "EpisodeVideos",
    "SynthConfig",
    "SynthResult",
    "episode_video",
    "parse_mix",
    "plan_episodes",
    "rollout_episode",
    "rollout_group",
    "run",
    "stage_positions",
    "stage_progress",
    "summary_lines",
    "with_index",
    "write_rollouts",
    "write_tables",
]
