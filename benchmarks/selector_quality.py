"""Quality bars of action selection (issue 13, seed 000), in the simulator (not a test).

Each step through the same `run()` functions the commands call:

1. `flywheel collect` with the random selector on training seeds (`--seed 0`): the logged
   approvals and rejections;
2. `flywheel train-selector` on it: P(approve | state, candidate);
3. on held-out collection seeds (`--eval-seed`, never used for training or design), three
   collections with the same responders, critical rule and admin:
     random          the baseline
     learned         --selector learned --scorer <the trained selector>
     epsilon_greedy  --epsilon 0.3 over the same scorer (the logging policy of the OPE bar)
4. the figures: per collection the approval rate of the first draw at each critical state
   (what the selector chose, before any undo), the episodes' success rate; from the
   epsilon-greedy logs the importance-weighted (IPS and self-normalized) estimate of the
   learned selector's first-draw approval rate, against the rate measured on-policy, and the
   unweighted estimate (the bias the weights correct).

The admin: `--approver progress:0` (approve an action unless the task progress falls). With
collect's default (a gain of at least 0.002 in one step) no candidate can be approved at about
15 % of the critical states (where no single step makes progress), which caps any selector's
approval near 85 %.

Bars (the issue's point 8): learned first-draw approval >= 90 %; |IPS - on-policy| <= 3 points.
Writes benchmarks/results/selector_quality.json and prints the figures.

    python benchmarks/selector_quality.py [--work DIR] [--train-episodes 40] [--eval-episodes 40]
        [--steps 1500] [--image-size 64] [--temperature 0.25] [--approver progress:0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.collection.config import CollectConfig  # noqa: E402
from actors.collection.driver import run as collect  # noqa: E402
from pipelines.selection import training as train_selector  # noqa: E402
from pipelines.selection.config import SelectorTrainConfig  # noqa: E402
from pipelines.selection.propensity import (  # noqa: E402
    dataset_log,
    first_draw_approval,
    off_policy_approval,
)


def collected(path: Path, **kw) -> Path:
    """Collect into `path` unless a finished dataset is there (resumable)."""
    if not (path / "meta" / "info.json").exists():
        collect(CollectConfig.from_flags(out=str(path), **kw))
    return path


def figures(path: Path) -> dict:
    meta = json.loads((path / "meta" / "collect.json").read_text())
    entries = list(dataset_log(path).values())
    episodes = meta["episodes"]
    return {
        "first_draw_approval": first_draw_approval(entries),
        "critical_states": sum(e["critical_states"] for e in episodes),
        "success_rate": sum(e["success"] for e in episodes) / len(episodes),
        "episodes": len(episodes),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="selector_quality_work")
    p.add_argument("--train-episodes", type=int, default=40)
    p.add_argument("--eval-episodes", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.25)
    p.add_argument("--critical", default="grasp+every:5")
    p.add_argument(
        "--approver",
        default="progress:0",
        help="collect's --approver (default progress:0: reject what makes progress fall; "
        "collect's own default, a gain of 0.002, leaves ~15 %% of critical states with no "
        "approvable candidate)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/selector_quality.json"))
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    common = {"image_size": args.image_size, "critical": args.critical, "approver": args.approver}
    train_ds = collected(
        work / "train_random", episodes=args.train_episodes, seed=args.seed, **common
    )
    trained = train_selector.run(
        SelectorTrainConfig.from_flags(
            dataset=str(train_ds), steps=args.steps, image_size=min(args.image_size, 64),
            storage=str(work / "runs"), name="selector", seed=args.seed,
        )
    )  # fmt: skip
    scorer = str(work / "runs" / "selector")
    ev = {"episodes": args.eval_episodes, "seed": args.eval_seed, **common}
    rand = collected(work / "eval_random", **ev)
    learned = collected(
        work / "eval_learned", selector="learned", scorer=scorer,
        temperature=args.temperature, **ev,
    )  # fmt: skip
    greedy = collected(
        work / "eval_epsilon", selector="epsilon_greedy", epsilon=0.3, scorer=scorer,
        temperature=args.temperature, **ev,
    )  # fmt: skip
    results = {
        "settings": vars(args),
        "selector_training": trained.metrics,
        "random": figures(rand),
        "learned": figures(learned),
        "epsilon_greedy_0.3": figures(greedy),
    }
    ope = off_policy_approval(list(dataset_log(greedy).values()), args.temperature)
    on_policy = results["learned"]["first_draw_approval"]
    results["off_policy"] = {
        **ope,
        "on_policy": on_policy,
        "ips_error_points": 100 * (ope["ips"] - on_policy),
        "self_normalized_error_points": 100 * (ope["self_normalized"] - on_policy),
        "unweighted_error_points": 100 * (ope["unweighted"] - on_policy),
    }
    results["bars"] = {
        "learned_approval_at_least_90": on_policy >= 0.9,
        "ips_within_3_points": abs(results["off_policy"]["ips_error_points"]) <= 3,
    }
    results["seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for arm in ("random", "learned", "epsilon_greedy_0.3"):
        f = results[arm]
        print(
            f"{arm:>20}: first-draw approval {f['first_draw_approval']:.1%} over "
            f"{f['critical_states']} critical states, success {f['success_rate']:.0%} "
            f"of {f['episodes']} episodes"
        )
    o = results["off_policy"]
    print(
        f"off-policy estimate of the learned selector's approval: IPS {o['ips']:.1%} "
        f"(self-normalized {o['self_normalized']:.1%}, unweighted {o['unweighted']:.1%}) "
        f"against {o['on_policy']:.1%} on-policy; ESS {o['ess']:.0f} of {o['states']}"
    )
    print(f"bars: {results['bars']}  ({results['seconds']:.0f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
