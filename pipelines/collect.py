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

import argparse
from collections.abc import Sequence

from actors.collection.config import DEFAULT_RESPONDERS, ROBOTS, CollectConfig
from actors.collection.driver import collection_summary, run
from actors.so101 import add_robot_flags
from pipelines.dataset import V21, V30
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.flags import config_from_flags
from pipelines.selection.selector import MODES
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="new dataset folder (or an interrupted collect's, to rerun)")
    p.add_argument("--episodes", type=int, required=True, help="episodes to collect")
    p.add_argument("--seed", type=int, default=0, help="seeds every episode's world and draws")
    p.add_argument("--task", default=DEFAULT_TASK, help=f"the task: {', '.join(TASK_NAMES)}")
    p.add_argument("--selector", default="random", help=f"selector mode: {', '.join(MODES)}")
    p.add_argument("--epsilon", type=float, default=0.1, help="epsilon_greedy's epsilon")
    p.add_argument("--temperature", type=float, default=1.0, help="the softmax temperature")
    p.add_argument(
        "--scorer",
        default=None,
        help="epsilon_greedy/learned: a train-selector checkpoint (score: the approval logit), "
        "or a controller or policy checkpoint (score: minus the candidate's distance to its "
        "action, in --score-scale units)",
    )
    p.add_argument("--score-scale", type=float, default=5.0, help="joint-space distance unit")
    p.add_argument(
        "--responders",
        default=DEFAULT_RESPONDERS,
        help="comma-separated controllers or policy checkpoints",
    )
    p.add_argument("--driver", default="noisy", help="who acts on plain frames")
    p.add_argument(
        "--critical",
        default="grasp+every:10",
        help="critical states: grasp (entering the grasp region), every:K, or grasp+every:K",
    )
    p.add_argument(
        "--approver",
        default="progress:0.002",
        help="progress:T: approve when the task progress gains at least T (on --robot "
        "emulated, the coupled simulator's progress); keyboard: a person (real arm)",
    )
    p.add_argument(
        "--robot",
        default="sim",
        help=f"{' | '.join(ROBOTS)}. sim: the simulator, exact undo; emulated: an emulated "
        "SO-101 through the real Feetech driver (follower coupled to the simulator, cameras "
        "rendering it; undo moves the arm back, the cube stays); real: a real follower "
        "(--follower-port, --follower-id, --camera front=S --camera wrist=S; --approver "
        "keyboard, policy responders, --critical every:K)",
    )
    add_robot_flags(p, leader=False)
    p.add_argument(
        "--max-steps", type=int, default=None, help="an episode's step limit (unset: the task's)"
    )
    p.add_argument("--fps", type=int, default=10, help="control and video frame rate")
    p.add_argument("--image-size", type=int, default=128, help="camera image size (pixels)")
    p.add_argument("--vcodec", default=None, help="video codec: av1, h264 or mpeg4")
    p.add_argument("--format", default=V21, help=f"LeRobot layout: {V21} or {V30}")
    p.add_argument("--ray-address", default=None, help="a Ray cluster to join (unset: local)")
    return p


def build(args: argparse.Namespace) -> CollectConfig:
    return config_from_flags(CollectConfig, args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel collect") -> int:
    cfg = build_parser(prog).parse_config(argv, build)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    print(
        f"Collected {len(result.episodes)} episodes, {result.frames} frames in "
        f"{result.seconds:.1f} s ({cfg.selection.selector} selector)"
    )
    for line in collection_summary(result):
        print(line)
    print(f"Dataset: {result.root}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.collect"))
