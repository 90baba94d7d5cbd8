"""`flywheel collect OUT --episodes N`: collection with critical-state approval (seed 000).

Each episode runs `actors.collection.episode.run_collection_episode` (`--robot`, below): a driver
acts
on plain frames; at critical states (`--critical`) the `--responders` propose n candidate
actions, the `--selector` (`random`, `epsilon_greedy` with `--epsilon`, `learned` with a
`--scorer` through a `--temperature` softmax) picks one with a logged propensity, the admin
(`--approver progress:T`: approve when the task progress gains at least T) approves it, or
rejects it and the state is undone (`SO101Env.set_state`) and another candidate drawn with the
exact conditional propensity. Episodes run as Ray tasks in parallel (the `flywheel synth`
pattern: each task renders its episodes' videos and returns their tables; the parquet files and
metadata are written once every length is known, by `pipelines.synthesis.write_rollouts`).

**Robots** (`--robot`). `sim` (default): `SO101Env`, exact undo. `emulated`: each episode's
task runs an `EmulatedSO101` (servo emulators on pseudo-terminals, the follower coupled to a
simulator, cameras rendering it) behind the real driver (`FollowerArm`), wrapped as an
`actors.collection.workcell.ArmWorkcell`: each action is sent to the follower and the next frame is
read
once the arm has settled there (so frames do not depend on the machine's load). The scripted
responders compute their candidates from the coupled simulator's state (they are the caller of
the responder API, `actors.collection.episode.Responder`), the `progress:T` admin reads the coupled
simulator's progress, and an undo is `return_to_pose` through `FollowerArm`: the arm goes back
to the recorded joint pose, the cube is not put back (deliberately, as on a real arm).
`real` (`--follower-port`, `--follower-id`, `--camera front=S --camera wrist=S`): the same
workcell on a real follower and OpenCV cameras; its episodes run one after another in this
process (one arm, and the keyboard); responders must be policy checkpoints (a controller needs
the simulator's state), the admin is `--approver keyboard`, critical states `every:K` (the grasp
region needs the cube's position), and the dataset has no simulator progress columns
(`progress`, `stage_progress_gt`, `progress_gt`); a rejected action's effect on the cube is not
undone. From Python, `actors.collection.driver.run(cfg, admin=APIAdmin(approve),
responders=[APIResponder(...)])` puts an API's admin and candidates in place of `--approver` /
`--responders`.

**The dataset** is a LeRobot dataset (v2.1 or v3.0) with synth's columns (`action` is the
executed action, so every stage reads it unchanged) plus seed 000's:

    action_propensity   float32[1]  P(a | s) of the executed action (1.0 on plain frames)
    selector_mode       string      random / epsilon_greedy / learned (the run's mode)
    approval_status     string      approved / rejected / none (plain frames)
    candidate_actions   float32[n, action_dim]  the n candidates (plain frames: the executed
                                    action in every row)
    selected_candidate  int64       row of candidate_actions executed; -1 on plain frames

The seed instead stores the candidates concatenated in `action` (n * action_dim values), which
no other stage could read as an action: here `action` stays the one action executed and the
candidates get their own column, so `train-policy`, `label` and the estimators read a
collected dataset like any other and importance weighting still sees the candidate set.
A rejected attempt is a frame of its own (`approval_status` rejected, next.reward 0) followed by
a frame of the same restored state; drop only those with `approval_status != "rejected"`
(keeping `== "approved"` would also drop every plain frame, the seed's filter example's trap).

**The log** `action_propensity_log.jsonl` (`pipelines.selection.propensity`): one line per frame,
every
field the seed lists plus `candidate_propensities`, `selected_candidate`, `collection_id`,
appended and fsynced line by line as each group of episodes comes back (in episode order).
`approval_status` is null there on plain frames, as the seed specifies for the log ("none" in
the parquet column). OUT must be new, empty, or the folder of an interrupted collect (a log but
no `meta/info.json`): a rerun then replaces that run's data and videos and appends its own log
lines after the old ones, which stay (never rewritten) under the old `collection_id`.
"""

from __future__ import annotations

from actors.collection.config import CollectConfig
from actors.collection.driver import CollectResult, collection_summary, run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process


def report(cfg: CollectConfig, result: CollectResult) -> list[str]:
    head = (
        f"Collected {len(result.episodes)} episodes, {result.frames} frames in "
        f"{result.seconds:.1f} s ({cfg.selection.selector} selector)"
    )
    return [head, *collection_summary(result), f"Dataset: {result.root}"]


JOB = Job("collect", __doc__, CollectConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.collect"))
