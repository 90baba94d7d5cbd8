"""`flywheel demo`: the whole flywheel once, on a small simulated dataset, on a local Ray cluster.

Steps 1-5 take the path a real recording takes: `lerobot-record` writes no progress
annotation, only cameras, state, actions and the task, so the value comes from which episodes
succeeded (RECAP, as in pi*0.6).

1. simulate SO-101 episodes of mixed quality (`flywheel synth --mix`): expert, hesitant and
   noisy controllers and one that fails (grasps beside the cube, closes too early), half of
   the noisy and failing ones watched by a simulated operator who takes over; frames are
   recorded after each success (what the reward classifier learns from);
2. record which episodes succeeded: one line per episode in `outcomes.csv`, written into the
   dataset by `flywheel outcomes --from csv:outcomes.csv` (as you would for a recording);
3. learn a value from those outcomes alone (`flywheel train-estimator --variant recap`, Ray
   Train): from each frame, how far the episode is from a success, a failure counting as far
   away; its held-out Spearman (successful episodes) and AUROC (successes against failures);
4. score every frame on Ray Data (`flywheel estimate`: the value and the N-step advantage)
   and label each task's best 30 % of frames positive, frames where the operator took over
   always (`flywheel label --per-task-threshold --intervention-positive`); as a check, how
   often these labels agree with labels from the simulator's true progress, which a recording
   would not have;
5. train an AWBC policy on those labels and a plain BC policy on the same frames (`flywheel
   train-policy`), and roll both out in the simulator on the same seeds (`flywheel
   eval-policy`): AWBC, asked for positive behaviour, should succeed clearly more often;
6. the reward classifier: trained on the episodes' success frames (`flywheel train-classifier`,
   Ray Train), served (`flywheel serve-reward`, Ray Serve) and asked over HTTP about every frame
   of the held-out test episodes, by four robots at once;
7. HIL-SERL (`flywheel hilserl`) for a short run in the simulator: the served classifier decides
   the rewards and the episode ends (a success on 3 frames in a row, `--success-frames 3`: the
   demo's small classifier has single frames a policy learns to exploit), the simulated
   operator takes over when the policy drifts, the step-3 value model's image encoder (frozen)
   feeds the actor and critic; the intervention rate of the first episodes against the last
   shows the operator being needed less, and the simulator's own success says whether the
   classifier's successes were real;
8. a 3-trial Ray Tune sweep (`flywheel sweep reward-threshold`) over the classifier's decision
   threshold on the held-out frames: its table and metric-against-parameter plot.

Everything runs at 64 x 64 pixels (synth's frames, every model's input; the policies take
`--policy-image-size`), HIL-SERL's image size on CPUs, so the whole flywheel turns on a laptop.

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
