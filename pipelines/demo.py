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

from pipelines.demo_steps import DemoConfig, DemoError, DemoResult, run, summary_table
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process


def report(config: DemoConfig, result: DemoResult) -> list[str]:
    lines = ["", summary_table(result.rows), f"Outputs: {result.out}"]
    if result.mlflow_uri:
        uri = result.mlflow_uri
        lines.append(f"MLflow runs: {uri} (mlflow ui --backend-store-uri {uri})")
    return lines


JOB = Job("demo", __doc__, DemoConfig, run, report, (DemoError,))
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.demo"))
