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

import sys
from collections.abc import Sequence

from actors.hilserl import HilserlConfig, run
from pipelines.runtime.cli import JobParser, job_parser, run_job
from pipelines.runtime.cluster import exit_process


def build_parser(prog: str) -> JobParser:
    return job_parser(prog, __doc__, HilserlConfig)


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
