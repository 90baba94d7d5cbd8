"""`flywheel demo`: the whole flywheel once, on a small simulated dataset, on a local Ray cluster.

1. synthesize SO-101 episodes in the simulator (`flywheel synth`), with frames recorded after
   each success (what the reward classifier learns from);
2. Stage 0: label them from the simulator's progress (`flywheel label`) and show where the
   positive labels went;
3. Stage 1: train a small advantage estimator on Ray Train (`flywheel train-estimator`);
4. Stage 2: estimate every frame's advantage on Ray Data (`flywheel estimate`), and Stage 0
   again from the estimate: how often it agrees with the labels from true progress;
5. Stage 3: train an AWBC policy on the estimate's labels and a plain BC policy on the same
   frames (`flywheel train-policy`, a short budget), and roll both out in the simulator on the
   same seeds (`flywheel eval-policy`);
6. the reward classifier: trained on the episodes' success frames (`flywheel train-classifier`,
   Ray Train), served (`flywheel serve-reward`, Ray Serve) and asked over HTTP about every frame
   of the held-out test episodes, by four robots at once;
7. HIL-SERL (`flywheel hilserl`) for a short run in the simulator: the served classifier decides
   the rewards and the episode ends (a success on 3 frames in a row, `--success-frames 3`: the
   demo's small classifier has single frames a policy learns to exploit), the simulated
   operator takes over when the policy drifts, the step-3 estimator's image encoder (frozen)
   feeds the actor and critic; the intervention rate of the first episodes against the last
   shows the operator being needed less, and the simulator's own success says whether the
   classifier's successes were real;
8. a 3-trial Ray Tune sweep (`flywheel sweep reward-threshold`) over the classifier's decision
   threshold on the held-out frames: its table and metric-against-parameter plot.

Everything runs at 64 x 64 pixels (synth's frames, every model's input), HIL-SERL's image size
on CPUs, so the whole flywheel turns on a laptop.

Each step is a function of the demo's folder (`--out`): what a step makes (datasets, checkpoints,
figures) lives there, and what later steps need of it is recorded in `demo.json` (written
atomically), so `flywheel demo --stage N` runs step N alone on the outputs of the steps before
it, and says which step to run first when they are missing. The whole demo starts from an empty
folder (it removes its own earlier output, nothing else). At the end it prints one summary table,
a row per step, and where the MLflow runs went.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.demo_steps import DemoConfig, DemoError, run, summary_table
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.flags import config_from_flags

D = DemoConfig()


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=D.out, help="the demo's folder (its outputs, demo.json)")
    p.add_argument("--stage", type=int, default=None, help="run only this step (1..8)")
    p.add_argument("--episodes", type=int, default=D.episodes, help="episodes to simulate")
    p.add_argument("--seed", type=int, default=D.seed, help="seed of every step")
    p.add_argument("--steps", type=int, default=D.steps, help="estimator training steps")
    p.add_argument("--policy-steps", type=int, default=D.policy_steps, help="policy steps")
    p.add_argument("--eval-episodes", type=int, default=D.eval_episodes, help="episodes per policy")
    p.add_argument(
        "--classifier-steps",
        type=int,
        default=D.classifier_steps,
        help="reward classifier training steps",
    )
    p.add_argument("--hilserl-steps", type=int, default=D.hilserl_steps, help="HIL-SERL env steps")
    p.add_argument(
        "--ray-address", default=None, help="a Ray cluster to join (default: start a local one)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="log no MLflow runs")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel demo") -> int:
    parser = build_parser(prog)
    config = parser.parse_config(argv, lambda ns: config_from_flags(DemoConfig, ns))
    problems = config.problems()
    if problems:
        parser.error(problems[0])
    result = run_job(run, config, prog, errors=(DemoError,))
    if result is None:
        return 2
    print()
    print(summary_table(result.rows))
    print(f"Outputs: {result.out}")
    if result.mlflow_uri:
        uri = result.mlflow_uri
        print(f"MLflow runs: {uri} (mlflow ui --backend-store-uri {uri})")
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.demo"))
