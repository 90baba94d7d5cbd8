"""`flywheel hilserl`: HIL-SERL on Ray: collectors on robots, one learner, a Q monitor.

The driver and its actors live in `actors.hilserl` (`run(HilserlConfig)`, `actors.hilserl.
driver`): collectors on robots feed one learner through the object store, a recorder writes
the online episodes as a dataset.

* **Sim** (`--env sim`, the default): each collector owns an `SO101Env` in end-effector-delta
  mode behind the normalizing wrapper, and the simulated operator, which takes over when the
  policy drifts and hands back. **Emulated SO-101** (`--robot emulated`): each collector drives
  its own emulated workcell through the real Feetech driver code (`FollowerArm`, `LeaderArm`,
  camera actors) and the servo emulator; a simulated operator's hand moves the leader arm.
  **Real arm** (`--follower-port/--leader-port`): one collector, the leader-arm takeover rule.
* **Reward**: the simulator's sparse reward (`--reward sim`) or the served classifier
  (`--reward classifier`: the Serve application `--reward-app`, through its handle, or an HTTP
  endpoint `--reward-url`), with `--terminate-on-success`.
* **Encoder**: `--encoder drqv2` (trainable, random shift; for GPU learners) or
  `--encoder frozen:CHECKPOINT` (an estimator's or classifier's image encoder, frozen; features
  computed once per frame in the collectors and kept in the replay buffer: what makes CPU
  learners practical). Without `--encoder`: `drqv2` when the cluster has a GPU for the learner;
  on CPUs the command asks for a frozen encoder (or an explicit `--encoder drqv2`).
* **Runs**: `--storage/--name` hold the checkpoints, the replay segments and the recorded
  dataset (`episodes/`); running the same command again resumes (buffers, weights, optimizers,
  step counters); a run name that holds another configuration is refused with the differences.
  MLflow gets the success rate, the intervention rate (intervened steps / steps over the last 20
  episodes), returns, losses, Q against its bound and the learning curves as PNGs.

Also `python -m pipelines.hilserl` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from actors.hilserl import HilserlConfig, run
from actors.so101 import add_robot_flags
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.simulator.tasks import DEFAULT_TASK, TASKS


def build_parser(prog: str) -> JobParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="sim", help="sim (a real or emulated arm: --robot)")
    p.add_argument("--robot", default=None, help="emulated: an emulated SO-101 through its driver")
    add_robot_flags(p)
    p.add_argument("--task", default=DEFAULT_TASK, help=f"the task: one of {', '.join(TASKS)}")
    p.add_argument("--fps", type=int, default=10, help="control ticks per second")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="camera frames; unset: the frozen encoder's, else 64",
    )
    p.add_argument("--steps", type=int, default=20_000, help="env steps to collect")
    p.add_argument("--collectors", type=int, default=1, help="collectors, each with its own robot")
    p.add_argument("--encoder", default=None, help="drqv2 or frozen:CHECKPOINT")
    p.add_argument("--frame-stack", type=int, default=1, help="frames the agent sees at once")
    p.add_argument(
        "--hidden-dim", type=int, default=None, help="MLP width; unset: 1024 on a GPU, 256 on CPUs"
    )
    p.add_argument("--feature-dim", type=int, default=50, help="the trunks' feature size")
    p.add_argument("--batch-size", type=int, default=256, help="transitions per update")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate")
    p.add_argument("--bc-weight", type=float, default=0.5, help="the BC term's weight")
    p.add_argument("--bc-on", default="interventions", help="interventions|interventions+demos")
    p.add_argument("--utd-ratio", type=int, default=1, help="critic updates per actor update")
    p.add_argument(
        "--updates-per-step", type=float, default=1.0, help="learner steps per env step (0: free)"
    )
    p.add_argument(
        "--max-lag", type=int, default=200, help="learner steps behind before collectors wait"
    )
    p.add_argument(
        "--online-ratio",
        type=float,
        default=0.5,
        help="the share of a batch from the online buffer",
    )
    p.add_argument(
        "--online-capacity", type=int, default=100_000, help="online buffer size (transitions)"
    )
    p.add_argument(
        "--offline-capacity", type=int, default=100_000, help="offline buffer size (transitions)"
    )
    p.add_argument(
        "--offline-dataset", default=None, help="a LeRobot dataset seeding the offline buffer"
    )
    p.add_argument(
        "--learning-starts", type=int, default=100, help="online transitions before training"
    )
    p.add_argument(
        "--random-steps",
        type=int,
        default=500,
        help="uniform random actions for the first env steps",
    )
    p.add_argument("--push-every", type=int, default=50, help="learner steps between weight pushes")
    p.add_argument(
        "--checkpoint-every", type=int, default=1000, help="env steps between checkpoints"
    )
    p.add_argument(
        "--stddev-schedule",
        default="linear(0.2,0.05,5000)",
        help="exploration noise: a number or linear(init,final,steps)",
    )
    p.add_argument(
        "--clip-target-q", action="store_true", help="clip the critic's target to the Q bound"
    )
    p.add_argument(
        "--q-alarm-patience",
        type=int,
        default=100,
        help="steps of Q above its bound before an alarm",
    )
    p.add_argument("--reward", default="sim", help="sim or classifier")
    p.add_argument("--reward-app", default="reward", help="the Serve application (classifier)")
    p.add_argument("--reward-url", default=None, help="or the classifier's HTTP endpoint")
    p.add_argument(
        "--terminate-on-success",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a success ends the episode",
    )
    p.add_argument(
        "--success-frames",
        type=int,
        default=1,
        help="classifier reward: consecutive frames it must call a success",
    )
    p.add_argument("--no-operator", action="store_true", help="(sim) no simulated operator")
    p.add_argument("--no-record", action="store_true", help="do not record the online episodes")
    p.add_argument(
        "--silent-after",
        dest="silent_after_s",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="seconds before a quiet collector is reported",
    )
    p.add_argument("--name", default=None, help="the run's name; unset: hilserl")
    p.add_argument("--storage", default="flywheel-runs", help="where runs and checkpoints go")
    p.add_argument("--seed", type=int, default=0, help="the run's seed")
    p.add_argument(
        "--learner-threads", type=int, default=None, help="the learner's torch threads; unset: 1"
    )
    p.add_argument("--ray-address", default=None, help="the Ray cluster; unset: a local one")
    p.add_argument("--no-mlflow", action="store_true", help="log nothing to MLflow")
    p.add_argument("--quiet", action="store_true", help="print no progress lines")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel hilserl") -> int:
    cfg = build_parser(prog).parse_config(argv, HilserlConfig.from_flags)
    try:
        result = run_job(run, cfg, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the run resumes from its last checkpoint", file=sys.stderr)
        return 130
    except RuntimeError as e:  # the learner failed, or every collector is gone
        print(f"{prog}: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    if result is None:
        return 2
    s = result.status
    if s:
        print(
            f"{s['env_steps']} env steps, {s['episodes']} episodes, {s['learner_steps']} learner "
            f"steps in {result.seconds:.0f} s; Q alarms {s['q_alarms']}"
        )
    print(f"Checkpoint: {result.checkpoint}")
    if result.dataset:
        print(f"Online episodes: {result.dataset}")
    if result.mlflow_run:
        print(result.mlflow_run)
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.hilserl"))
