"""Quality bar of Stage 3: AWBC against plain BC and the other arms, in the simulator (not a test).

Everything from scratch with fixed seeds, each step through the same `run()` functions the
commands call, with train-policy's defaults (no tuning flags: the defaults are the budget):

1. `flywheel synth --mix expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4 --episodes 200
   --seed 0` (most rollouts are not expert, as in RECAP's autonomous data);
2. `flywheel label --threshold 30` (ground truth: the simulator's progress);
3. Stage 1-2 for the estimator-label arm and for AWR's advantages: `flywheel train-estimator`
   (defaults), `flywheel estimate`, then `flywheel label --data-dir data_KAI0_<step>
   --advantage-source absolute_advantage --threshold 30`;
4. for every training seed (default 0 and 1) the trained arms:
     bc             --conditioning none
     awbc           (defaults: --conditioning prompt, indicator dropout 0.3)
     awr            --conditioning none --weighting awr --data-dir data_KAI0_<step>
                    (A = the estimator's absolute_advantage)
     iql            --conditioning none --weighting iql (next.reward / next.done)
     filtered_bc    --conditioning none --drop-negative
     awbc_estimator --data-dir data_KAI0_<step> (labels from the estimate, no ground truth)
5. `flywheel eval-policy` on seeds `--eval-seed` .. +99 (default 0-99; every design
   iteration was done on seeds 10000 and up and on a dataset synthesized with seed 1, so the
   reported seeds played no part in choosing the design) with the evaluated arms
     bc (bare prompt), awbc_positive, awbc_negative, awbc_cfg1.5, awbc_cfg2 (positive prompt,
     guidance beta), awr, iql, filtered_bc, awbc_estimator (positive prompt), expert
     (the scripted expert, for reference).

Per arm, pooled over the training seeds: successes, the Wilson 95 % interval, the per-seed
rates, the mean steps to success, McNemar's exact p-value against BC on the paired
(training seed, evaluation seed) episodes, and the training CPU-minutes (the sum over Ray Train
workers of `time.process_time()`, decoding included). Writes
benchmarks/results/policy_quality.json and prints a Markdown table.

Resumable: finished runs, estimates and evaluations (per arm) in `--work` are reused, so the
same command continues an interrupted bar. `--arms bc,awbc,...` runs a subset for every training
seed; an arm evaluated for fewer training seeds than the others is pooled over the seeds it has
(the table's per-seed column says which).

    python benchmarks/policy_quality.py [--work DIR] [--episodes 200] [--training-seeds 0,1]
        [--eval-episodes 100] [--eval-seed 0] [--steps N (default: train-policy's)] [--arms LIST]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import evaluation as evaluate  # noqa: E402
from pipelines import label, synth  # noqa: E402
from pipelines.estimator import inference as estimate  # noqa: E402
from pipelines.estimator import training as train_estimator  # noqa: E402
from pipelines.estimator.config import EstimatorTrainConfig  # noqa: E402
from pipelines.evaluation.stats import mcnemar_exact, paired_counts, wilson_interval  # noqa: E402
from pipelines.policy import training as train  # noqa: E402
from pipelines.policy.config import PolicyTrainConfig  # noqa: E402
from pipelines.runtime.training import flat_fields  # noqa: E402

MIX = "expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4"


def trained_arms(est_dir: str) -> dict[str, dict]:
    """Arm name -> train-policy options (all else train-policy's defaults)."""
    return {
        "bc": {"conditioning": "none"},
        "awbc": {},
        "awr": {"conditioning": "none", "weighting": "awr", "data_dir": est_dir},
        "iql": {"conditioning": "none", "weighting": "iql"},
        "filtered_bc": {"conditioning": "none", "drop_negative": True},
        "awbc_estimator": {"data_dir": est_dir},
    }


# evaluated arm -> (trained arm, prompt, cfg scale); None: the scripted expert
EVALUATED = {
    "bc": ("bc", "none", 1.0),
    "awbc_positive": ("awbc", "positive", 1.0),
    "awbc_negative": ("awbc", "negative", 1.0),
    "awbc_cfg1.5": ("awbc", "positive", 1.5),
    "awbc_cfg2": ("awbc", "positive", 2.0),
    "awr": ("awr", "none", 1.0),
    "iql": ("iql", "none", 1.0),
    "filtered_bc": ("filtered_bc", "none", 1.0),
    "awbc_estimator": ("awbc_estimator", "positive", 1.0),
    "expert": (None, None, 1.0),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def prepare(work: Path, episodes: int, data_seed: int) -> str:
    """Dataset, GT labels, estimator, estimate and estimated labels; returns the estimate dir."""
    root = work / "dataset"
    if not (root / "meta" / "info.json").exists():
        log(f"synth {episodes} episodes (seed {data_seed}, mix {MIX})")
        made = synth.run(
            synth.SynthConfig(out=str(root), episodes=episodes, seed=data_seed, mix=MIX)
        )
        for line in synth.summary_lines(made):
            log(line)
    state = work / "prepared.json"
    if state.exists():
        return json.loads(state.read_text())["estimate_dir"]
    log("label --threshold 30 (ground truth)")
    quiet = dict(mlflow=False)
    label.run(label.LabelConfig(str(root), threshold=30, **quiet), out=lambda *a: None)
    log("Stage 1: train-estimator (defaults)")
    t = time.time()
    est = train_estimator.run(
        EstimatorTrainConfig.from_flags(
            dataset=str(root), storage=str(work / "runs"), name="estimator", mlflow=False
        )
    )
    est_wall = time.time() - t
    log(f"  step {est.step}, held-out Spearman {est.metrics.get('eval_spearman')}")
    log("Stage 2: estimate")
    out = estimate.run(estimate.EstimateConfig(str(root), est.checkpoint))
    log("label --data-dir", out.out_dir.name, "--advantage-source absolute_advantage")
    label.run(
        label.LabelConfig(
            str(root),
            threshold=30,
            data_dir=out.out_dir.name,
            advantage_source="absolute_advantage",
            **quiet,
        ),
        out=lambda *a: None,
    )
    info = {
        "estimate_dir": out.out_dir.name,
        "estimator_steps": est.step,
        "estimator_spearman": est.metrics.get("eval_spearman"),
        "estimator_train_wall_s": round(est_wall, 1),
        "estimator_workers": 2,
    }
    state.write_text(json.dumps(info, indent=2))
    return out.out_dir.name


def train_arm(work: Path, arm: str, options: dict, seed: int, steps: int | None) -> dict:
    extra = {"steps": steps} if steps else {}
    cfg = PolicyTrainConfig.from_flags(
        dataset=str(work / "dataset"),
        storage=str(work / "runs"),
        name=f"{arm}-seed{seed}",
        seed=seed,
        mlflow=False,
        **options,
        **extra,
    )
    t = time.time()
    result = train.run(cfg)
    log(
        f"  {arm} seed {seed}: step {result.step}, L1 {result.metrics.get('l1', float('nan')):.4f}"
        f", {result.metrics.get('cpu_seconds', 0) / 60:.1f} CPU-min, {time.time() - t:.0f} s"
    )
    from pipelines.runtime.checkpoints import read_meta

    meta = read_meta(result.checkpoint, "policy")
    return {
        "checkpoint": result.checkpoint,
        "cpu_seconds": meta["metrics"].get("cpu_seconds"),
        "step": meta["step"],
        "l1": meta["metrics"].get("l1"),
        "heldout_l1": meta["metrics"].get("heldout_l1"),
    }


def evaluate_seed(
    work: Path, runs: dict, seed: int, episodes: int, eval_seed: int, names: list[str]
) -> dict:
    """Evaluate the arms `names` of one training seed; arms already in the cache are reused.

    The cache `eval-seed<seed>.json` holds one evaluate report per training seed; arms added
    later are evaluated on the same evaluation seeds, so every comparison stays paired.
    """
    path = work / f"eval-seed{seed}.json"
    cached = json.loads(path.read_text()) if path.exists() else {"arms": []}
    have = {a["name"] for a in cached["arms"]}
    missing = [n for n in names if n not in have]
    if not missing:
        return cached
    specs = []
    for name in missing:
        arm, prompt, beta = EVALUATED[name]
        if arm is None:
            specs.append(f"controller:expert#name={name}")
        else:
            specs.append(f"{runs[arm]['checkpoint']}#prompt={prompt}#cfg={beta}#name={name}")
    first_source, first_opts = evaluate.parse_arm(specs[0])
    part = work / f"eval-seed{seed}.part.json"
    cfg = evaluate.EvalConfig(
        checkpoint=first_source,
        prompt=first_opts.prompt,
        cfg_scale=first_opts.cfg_scale,
        name=first_opts.name,
        compare=specs[1:],
        episodes=episodes,
        seed=eval_seed,
        report=str(part),
        mlflow=False,
    )
    t = time.time()
    result = evaluate.run(cfg)
    log(f"  evaluated {', '.join(missing)} of training seed {seed} in {time.time() - t:.0f} s")
    for line in evaluate.summary_lines(result):
        log(line)
    report = result.report
    if cached["arms"]:
        assert cached["seeds"] == report["seeds"], "cached evaluation used other seeds"
        report = {**report, "arms": cached["arms"] + report["arms"], "comparisons": None}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    part.unlink(missing_ok=True)
    return report


def aggregate(reports: dict[int, dict], runs: dict[int, dict]) -> dict:
    arms = {}
    by_seed = {s: {a["name"]: a for a in rep["arms"]} for s, rep in reports.items()}
    seeds = sorted(reports)
    for name, (arm, prompt, beta) in EVALUATED.items():
        arm_seeds = [s for s in seeds if name in by_seed[s]]
        if not arm_seeds:
            continue
        outcomes = [o for s in arm_seeds for o in by_seed[s][name]["success"]]
        steps = [
            st
            for s in arm_seeds
            for st, ok in zip(by_seed[s][name]["steps"], by_seed[s][name]["success"], strict=True)
            if ok
        ]
        k, n = sum(outcomes), len(outcomes)
        entry = {
            "trained_arm": arm,
            "prompt": prompt,
            "cfg_scale": beta,
            "episodes": n,
            "successes": k,
            "success_rate": k / n,
            "ci95": list(wilson_interval(k, n)),
            "per_training_seed": {str(s): by_seed[s][name]["success_rate"] for s in arm_seeds},
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
        }
        if arm is not None:
            entry["train_cpu_minutes"] = {
                str(s): round(runs[s][arm]["cpu_seconds"] / 60, 2) for s in arm_seeds
            }
        if name != "bc":
            base = [o for s in arm_seeds for o in by_seed[s]["bc"]["success"]]
            c = paired_counts(base, outcomes)
            entry["vs_bc"] = {
                "difference_points": round(100 * (k - sum(base)) / n, 1),
                "only_this": c["only_second"],
                "only_bc": c["only_first"],
                "mcnemar_p": mcnemar_exact(c["only_first"], c["only_second"]),
            }
        arms[name] = entry
    pos = [o for s in seeds for o in by_seed[s]["awbc_positive"]["success"]]
    neg = [o for s in seeds for o in by_seed[s]["awbc_negative"]["success"]]  # same seeds
    c = paired_counts(neg, pos)
    arms["awbc_positive"]["vs_awbc_negative"] = {
        "difference_points": round(100 * (sum(pos) - sum(neg)) / len(pos), 1),
        "mcnemar_p": mcnemar_exact(c["only_first"], c["only_second"]),
    }
    return arms


def table(arms: dict) -> str:
    rows = [
        "| arm | success (pooled) | Wilson 95 % | per training seed | vs BC (points, McNemar p) "
        "| mean steps to success | training CPU-min |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        lo, hi = a["ci95"]
        seeds = ", ".join(f"{s}: {100 * v:.0f} %" for s, v in a["per_training_seed"].items())
        vs = a.get("vs_bc")
        vs_text = f"{vs['difference_points']:+.1f} (p = {vs['mcnemar_p']:.2g})" if vs else "-"
        steps = a["mean_steps_to_success"]
        cpu = ", ".join(f"{v:.1f}" for v in a.get("train_cpu_minutes", {}).values()) or "-"
        rows.append(
            f"| {name} | {100 * a['success_rate']:.1f} % ({a['successes']}/{a['episodes']}) | "
            f"{100 * lo:.1f}-{100 * hi:.1f} % | {seeds} | {vs_text} | "
            f"{steps:.1f} | {cpu} |"
            if steps is not None
            else f"| {name} | {100 * a['success_rate']:.1f} % ({a['successes']}/{a['episodes']}) "
            f"| {100 * lo:.1f}-{100 * hi:.1f} % | {seeds} | {vs_text} | - | {cpu} |"
        )
    return "\n".join(rows)


def figure(arms: dict, path: Path) -> None:
    """Success rate per arm (pooled over training seeds) with Wilson 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(arms)
    rates = [100 * arms[n]["success_rate"] for n in names]
    # (max: a Wilson bound at 0 % or 100 % equals the rate up to rounding)
    low = [max(0.0, r - 100 * arms[n]["ci95"][0]) for r, n in zip(rates, names, strict=True)]
    high = [max(0.0, 100 * arms[n]["ci95"][1] - r) for r, n in zip(rates, names, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    colors = ["#888" if n in ("bc", "expert") else "#3a7" for n in names]
    ax.bar(names, rates, yerr=[low, high], capsize=3, color=colors)
    ax.set_ylabel("success, % (Wilson 95 %)")
    ax.set_ylim(0, 105)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_title(
        "Stage 3 arms on the same evaluation seeds, pooled over training seeds", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "policy-quality"))
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--training-seeds", default="0,1")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="default: train-policy's default")
    p.add_argument(
        "--arms",
        default=",".join(trained_arms("")),
        help="trained arms to run for every training seed (bc and awbc always); an arm run "
        "for fewer seeds is pooled over the seeds it has",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "policy_quality.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from pipelines.runtime.cluster import connect

    connect(None)
    t0 = time.time()
    est_dir = prepare(work, args.episodes, args.data_seed)
    seeds = [int(s) for s in args.training_seeds.split(",")]
    runs: dict[int, dict] = {}
    reports: dict[int, dict] = {}
    wanted = {"bc", "awbc", *args.arms.split(",")}
    unknown = wanted - set(trained_arms(est_dir))
    if unknown:
        p.error(f"--arms: unknown arm(s) {', '.join(sorted(unknown))}")
    for seed in seeds:
        log(f"training seed {seed}")
        runs[seed] = {
            arm: train_arm(work, arm, opts, seed, args.steps)
            for arm, opts in trained_arms(est_dir).items()
            if arm in wanted
        }
        names = [n for n, (arm, _, _) in EVALUATED.items() if arm is None or arm in wanted]
        reports[seed] = evaluate_seed(
            work, runs[seed], seed, args.eval_episodes, args.eval_seed, names
        )
    # a seed's cached evaluations of arms not asked for this time still count
    for seed in seeds:
        for a in reports[seed]["arms"]:
            arm = EVALUATED[a["name"]][0]
            if arm is not None and arm not in runs[seed]:
                runs[seed][arm] = train_arm(work, arm, trained_arms(est_dir)[arm], seed, args.steps)
    arms = aggregate(reports, runs)
    defaults = flat_fields(PolicyTrainConfig(""))
    result = {
        "dataset": {"episodes": args.episodes, "seed": args.data_seed, "mix": MIX, "label": 30},
        "prepared": json.loads((work / "prepared.json").read_text()),
        "training_seeds": seeds,
        "eval_seeds": [args.eval_seed, args.eval_seed + args.eval_episodes - 1],
        "design_iteration": "dataset seed 1 and evaluation seeds >= 10000 only",
        "train_policy_defaults": {
            k: defaults[k]
            for k in (
                "workers",
                "steps",
                "batch_size",
                "lr",
                "image_size",
                "encoder",
                "chunk_size",
                "n_action_steps",
                "indicator_dropout",
                "data_type_weights",
            )
        },  # fmt: skip
        "steps": args.steps or defaults["steps"],
        "arms": arms,
        "wall_s": round(time.time() - t0),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    figure(arms, Path(args.out).with_suffix(".png"))
    print(table(arms))
    print(f"Wrote {args.out} and its .png")


if __name__ == "__main__":
    main()
