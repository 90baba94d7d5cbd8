"""Quality bar of the outcome path (RECAP): AWBC on labels from a value learned from episode
outcomes alone, against plain BC and against AWBC on ground-truth progress labels (not a test).

Everything from scratch with fixed seeds, each step through the same `run()` functions the
commands call, with their defaults (no tuning flags):

1. `flywheel synth --mix expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4 --episodes 200 --seed 0`
   (the Stage 3 bar's data), kept as `original/`;
2. `recap/`: a copy holding only what `lerobot-record` writes (state, action, cameras, task,
   the index columns): the progress, reward, done, data-type and intervention columns dropped
   from every data file and from `meta/info.json`, and every `episode_success` removed;
3. `flywheel outcomes recap --from csv:outcomes.csv` (the simulator's success per episode);
4. `flywheel train-estimator recap --variant recap` (defaults), `flywheel estimate`, then
   `flywheel label recap --data-dir data_RECAP_<step> --advantage-source absolute_advantage
   --threshold 30 --per-task-threshold --intervention-positive`;
5. `flywheel label original --threshold 30` (labels from the simulator's true progress);
6. arms, train-policy's defaults, training seed 0 (`--training-seeds` for more):
     bc          recap, --conditioning none
     awbc_recap  recap, --data-dir data_RECAP_<step> (positive prompt at evaluation)
     awbc_truth  original (labels from true progress; positive prompt)
7. `flywheel eval-policy` on evaluation seeds 0-99, paired across arms.

Also measured: on the value model's held-out episodes, V's Spearman correlation with the
simulator's true progress (`stage_progress_gt` of `original/`, read only here, for checking)
over the successful ones, and the AUROC of V at each episode's midpoint separating successes
from failures; the training and estimate budgets; and Stage 2 (`flywheel estimate`, end to end)
against a one-episode-at-a-time loop over the same model that evaluates the formula as written
(V(s_t) and V(s_{t+N}) each through the whole model).

Resumable: each finished step's result is kept in `--work` and reused. Writes
benchmarks/results/recap_quality.json and prints a Markdown table.

    python benchmarks/recap_quality.py [--work DIR] [--episodes 200] [--training-seeds 0]
        [--eval-episodes 100] [--eval-seed 0] [--policy-steps N] [--value-steps N]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import evaluation as evaluate  # noqa: E402
from pipelines import label, recap, synth  # noqa: E402
from pipelines.dataset import (  # noqa: E402
    LeRobotDataset,
    atomic_write_json,
    commit_staged,
    read_columns,
    write_parquet,
)
from pipelines.dataset.outcomes import stage_episode_outcomes  # noqa: E402
from pipelines.estimator import inference as estimate  # noqa: E402
from pipelines.estimator import training as train_estimator  # noqa: E402
from pipelines.estimator.config import EstimateConfig, EstimatorTrainConfig  # noqa: E402
from pipelines.estimator.model import load_checkpoint  # noqa: E402
from pipelines.estimator.value import midpoint_auroc  # noqa: E402
from pipelines.evaluation.stats import mcnemar_exact, paired_counts, wilson_interval  # noqa: E402
from pipelines.policy import training as train_policy  # noqa: E402
from pipelines.policy.config import PolicyTrainConfig  # noqa: E402
from pipelines.runtime.checkpoints import read_meta  # noqa: E402
from pipelines.runtime.schedule import split_episodes  # noqa: E402

MIX = "expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4"
# what lerobot-record does not write: every column a recording lacks
NOT_RECORDED = (
    "next.reward",
    "next.done",
    "progress",
    "stage_progress_gt",
    "progress_gt",
    "data_type",
    "complementary_info.is_intervention",
)
QUIET = {"mlflow": False}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def cached(work: Path, name: str, make):
    """The JSON result of step `name`, computed once by `make()` and kept in `work`."""
    path = work / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    t = time.time()
    value = make()
    value["wall_s"] = round(time.time() - t, 1)
    atomic_write_json(path, value)
    return value


def strip_to_recording(original: Path, out: Path) -> dict:
    """`out`: a copy of `original` with only what lerobot-record writes (module docstring)."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(original, tmp, ignore=shutil.ignore_patterns("data_*"))
    dropped: set[str] = set()
    for path in sorted((tmp / "data").rglob("*.parquet")):
        table = read_columns(path)
        gone = [c for c in NOT_RECORDED if c in table.column_names]
        dropped.update(gone)
        write_parquet(path, table.drop(gone))
    info_path = tmp / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    for c in NOT_RECORDED:
        info["features"].pop(c, None)
    atomic_write_json(info_path, info)
    ds = LeRobotDataset(tmp)
    commit_staged(tmp, stage_episode_outcomes(ds, dict.fromkeys(ds.episode_indices)))
    tmp.rename(out)
    return {"dropped_columns": sorted(dropped)}


def outcomes_csv(original: Path, path: Path) -> dict:
    ds = LeRobotDataset(original)
    rows = [(e, ds.episode_outcome(e)) for e in ds.episode_indices]
    if any(ok is None for _, ok in rows):
        raise SystemExit(f"{original}: synth wrote no outcome for some episodes")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode_index", "success"])
        w.writerows((e, int(ok)) for e, ok in rows)
    return {"episodes": len(rows), "successes": sum(ok for _, ok in rows)}


def value_quality(work: Path, value: dict, est_dir: str) -> dict:
    """V on the value model's held-out episodes against the truth (checking only)."""
    rec, orig = LeRobotDataset(work / "recap"), LeRobotDataset(work / "original")
    meta = read_meta(value["checkpoint"], "estimator")
    run = meta.get("config", {}).get("run", {})
    holdout, seed = run.get("holdout", 0.2), run.get("seed", 0)
    _, held = split_episodes(rec.episode_indices, holdout, seed)
    values, outcomes, v_succ, p_succ = [], [], [], []
    for e in held:
        v = rec.read_episode(e, ["absolute_value"], est_dir)["absolute_value"].to_numpy()
        ok = bool(rec.episode_outcome(e))
        values.append(v)
        outcomes.append(ok)
        if ok:
            p = orig.read_episode(e, ["stage_progress_gt"])["stage_progress_gt"].to_numpy()
            v_succ.append(v)
            p_succ.append(p)
    from scipy.stats import spearmanr

    rho = (
        float(spearmanr(np.concatenate(v_succ), np.concatenate(p_succ)).statistic)
        if v_succ
        else None
    )
    return {
        "held_out_episodes": len(held),
        "held_out_successes": int(sum(outcomes)),
        "spearman_v_true_progress_successes": rho,
        "midpoint_auroc": midpoint_auroc(values, outcomes),
        "holdout_seed": seed,
    }


def sequential_estimate(ds: LeRobotDataset, checkpoint: str, n_step: int = 50) -> dict:
    """One episode at a time in one process, the formula as written: V(s_t) and V(s_{t+N})
    each through the whole model (the images encoded for both)."""
    import torch

    from pipelines.estimator import recap as recap_setup

    model, config, _ = load_checkpoint(checkpoint)
    meta = read_meta(checkpoint, "estimator")
    setup = recap_setup.estimation_setup(
        ds, meta["recap"], config.prompt_vocab, ds.episode_indices, n_step, None
    )
    t, frames = time.time(), 0
    for e in ds.episode_indices:
        images = np.concatenate(
            [b["images"] for b in estimate.episode_frames(ds, e, config.cameras, config.image_size)]
        )
        state = np.stack(
            ds.read_episode(e, ["observation.state"])["observation.state"].to_numpy(
                zero_copy_only=False
            )
        ).astype(np.float32)
        n = len(images)
        ahead = np.minimum(np.arange(n) + n_step, n - 1)
        tokens = torch.from_numpy(np.repeat(setup.episodes[e].tokens, n, axis=0))
        with torch.no_grad():
            outs = []
            for idx in (np.arange(n), ahead):
                im = torch.from_numpy(images[idx][:, None])
                st = torch.from_numpy(state[idx][:, None])
                outs.append(model(im, st, tokens).numpy())
        frames += n
    seconds = time.time() - t
    return {"frames": frames, "seconds": round(seconds, 1), "frames_per_s": frames / seconds}


def train_arm(work: Path, name: str, dataset: str, seed: int, steps: int | None, **options):
    def make():
        extra = {"steps": steps} if steps else {}
        cfg = PolicyTrainConfig.from_flags(
            dataset=dataset,
            storage=str(work / "runs"),
            name=f"{name}-seed{seed}",
            seed=seed,
            **QUIET,
            **options,
            **extra,
        )
        result = train_policy.run(cfg)
        meta = read_meta(result.checkpoint, "policy")
        log(f"  {name} seed {seed}: step {result.step} ({result.seconds:.0f} s)")
        return {
            "checkpoint": str(result.checkpoint),
            "step": meta["step"],
            "cpu_seconds": meta["metrics"].get("cpu_seconds"),
        }

    return cached(work, f"arm-{name}-seed{seed}", make)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "recap-quality"))
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--training-seeds", default="0")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--policy-steps", type=int, default=None, help="default: train-policy's")
    p.add_argument("--value-steps", type=int, default=None, help="default: train-estimator's")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recap_quality.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from pipelines.runtime.cluster import connect

    connect(None)
    t0 = time.time()
    original, rec = work / "original", work / "recap"

    def make_synth():
        log(f"synth {args.episodes} episodes (seed {args.data_seed}, mix {MIX})")
        made = synth.run(
            synth.SynthConfig(
                out=str(original), episodes=args.episodes, seed=args.data_seed, mix=MIX
            )
        )
        return {"episodes": len(made.episodes), "frames": made.frames}

    data = cached(work, "synth", make_synth)
    stripped = cached(work, "recording", lambda: strip_to_recording(original, rec))
    counts = cached(work, "outcomes-csv", lambda: outcomes_csv(original, work / "outcomes.csv"))

    def record_outcomes():
        result = recap.run(
            recap.OutcomesConfig(dataset=str(rec), source=f"csv:{work}/outcomes.csv")
        )
        return {"set": len(result.set_now), "per_task": result.per_task}

    cached(work, "outcomes", record_outcomes)

    def train_value():
        log("train-estimator --variant recap (defaults)")
        extra = {"steps": args.value_steps} if args.value_steps else {}
        result = train_estimator.run(
            EstimatorTrainConfig.from_flags(
                dataset=str(rec),
                variant="recap",
                storage=str(work / "runs"),
                name="value-recap",
                **QUIET,
                **extra,
            )
        )
        meta = read_meta(result.checkpoint, "estimator")
        log(f"  step {result.step}, metrics {result.metrics}")
        return {
            "checkpoint": str(result.checkpoint),
            "step": result.step,
            "metrics": result.metrics,
            "cpu_seconds": meta["metrics"].get("cpu_seconds"),
            "train_wall_s": round(result.seconds, 1),
        }

    value = cached(work, "value", train_value)

    def run_estimate():
        log("estimate (Ray Data)")
        result = estimate.run(EstimateConfig(dataset=str(rec), checkpoint=value["checkpoint"]))
        return {
            "out_dir": result.out_dir.name,
            "frames": result.frames,
            "seconds": round(result.seconds, 1),
            "frames_per_s": result.frames / result.seconds,
        }

    est = cached(work, "estimate", run_estimate)
    est_dir = est["out_dir"]

    def label_recap():
        log(f"label recap --data-dir {est_dir} (per task, interventions positive)")
        result = label.run(
            label.LabelConfig(
                str(rec),
                threshold=30,
                data_dir=est_dir,
                advantage_source="absolute_advantage",
                per_task_threshold=True,
                intervention_positive=True,
                **QUIET,
            ),
            out=lambda *a: None,
        )
        return {"counts": {str(k): int(v) for k, v in result.counts.items()}}

    cached(work, "label-recap", label_recap)

    def label_truth():
        log("label original --threshold 30 (true progress)")
        result = label.run(
            label.LabelConfig(str(original), threshold=30, **QUIET), out=lambda *a: None
        )
        return {"counts": {str(k): int(v) for k, v in result.counts.items()}}

    cached(work, "label-truth", label_truth)
    quality = cached(work, "value-quality", lambda: value_quality(work, value, est_dir))
    speed = cached(
        work, "sequential", lambda: sequential_estimate(LeRobotDataset(rec), value["checkpoint"])
    )

    arms: dict[str, dict] = {}
    reports = {}
    for seed in [int(s) for s in args.training_seeds.split(",")]:
        log(f"training seed {seed}")
        runs = {
            "bc": train_arm(work, "bc", str(rec), seed, args.policy_steps, conditioning="none"),
            "awbc_recap": train_arm(
                work, "awbc_recap", str(rec), seed, args.policy_steps, data_dir=est_dir
            ),
            "awbc_truth": train_arm(work, "awbc_truth", str(original), seed, args.policy_steps),
        }

        def run_eval(runs=runs, seed=seed):
            cfg = evaluate.EvalConfig(
                checkpoint=runs["bc"]["checkpoint"],
                prompt="none",
                name="bc",
                compare=[
                    f"{runs['awbc_recap']['checkpoint']}#prompt=positive#name=awbc_recap",
                    f"{runs['awbc_truth']['checkpoint']}#prompt=positive#name=awbc_truth",
                ],
                episodes=args.eval_episodes,
                seed=args.eval_seed,
                **QUIET,
            )
            result = evaluate.run(cfg)
            for line in evaluate.summary_lines(result):
                log(line)
            return {"report": result.report}

        reports[seed] = cached(work, f"eval-seed{seed}", run_eval)["report"]
        for name, run in runs.items():
            arms.setdefault(name, {"cpu_minutes": {}})["cpu_minutes"][str(seed)] = (
                round(run["cpu_seconds"] / 60, 2) if run.get("cpu_seconds") else None
            )

    pooled = {
        name: [
            o
            for rep in reports.values()
            for a in rep["arms"]
            if a["name"] == name
            for o in a["success"]
        ]
        for name in arms
    }
    for name, outcomes in pooled.items():
        k, n = sum(outcomes), len(outcomes)
        entry = arms[name]
        entry.update(successes=k, episodes=n, success_rate=k / n, ci95=list(wilson_interval(k, n)))
        if name != "bc":
            c = paired_counts(pooled["bc"], outcomes)
            entry["vs_bc"] = {
                "difference_points": round(100 * (k - sum(pooled["bc"])) / n, 1),
                "only_this": c["only_second"],
                "only_bc": c["only_first"],
                "mcnemar_p": mcnemar_exact(c["only_first"], c["only_second"]),
            }
    gap = 100 * (arms["awbc_truth"]["success_rate"] - arms["awbc_recap"]["success_rate"])
    result = {
        "dataset": {
            "episodes": data["episodes"],
            "frames": data["frames"],
            "seed": args.data_seed,
            "mix": MIX,
        },
        "recording": stripped,
        "outcomes": counts,
        "value": value,
        "estimate": est,
        "estimate_speedup_over_sequential": est["frames_per_s"] / speed["frames_per_s"],
        "sequential_estimate": speed,
        "value_quality": quality,
        "training_seeds": args.training_seeds,
        "eval_seeds": [args.eval_seed, args.eval_seed + args.eval_episodes - 1],
        "policy_steps": args.policy_steps or PolicyTrainConfig("").run.steps,
        "arms": arms,
        "awbc_truth_minus_awbc_recap_points": round(gap, 1),
        "wall_s": round(time.time() - t0),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    rows = [
        "| arm | success | Wilson 95 % | vs BC (points; McNemar p) | training CPU-min |",
        "|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        vs = a.get("vs_bc")
        rows.append(
            f"| {name} | {100 * a['success_rate']:.1f} % ({a['successes']}/{a['episodes']}) | "
            f"{100 * a['ci95'][0]:.0f}-{100 * a['ci95'][1]:.0f} % | "
            + (f"{vs['difference_points']:+.1f} (p = {vs['mcnemar_p']:.2g})" if vs else "-")
            + f" | {', '.join(str(v) for v in a['cpu_minutes'].values())} |"
        )
    print("\n".join(rows))
    print(
        json.dumps(
            {k: result[k] for k in ("value_quality", "estimate_speedup_over_sequential")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
