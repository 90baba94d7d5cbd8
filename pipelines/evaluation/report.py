"""An evaluation's results: per arm and paired between arms, as text, JSON and an MLflow run."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.evaluation.config import EnvSettings, EvalConfig
from pipelines.evaluation.episodes import EpisodeResult
from pipelines.evaluation.stats import mcnemar_exact, paired_counts, wilson_interval
from pipelines.runtime.tracking import allow_store


@dataclass
class ArmResult:
    name: str
    source: str
    prompt: str | None
    cfg_scale: float
    outcomes: list[EpisodeResult]

    def summary(self) -> dict:
        n = len(self.outcomes)
        k = sum(o.success for o in self.outcomes)
        steps = [o.steps_to_success for o in self.outcomes if o.success]
        return {
            "name": self.name,
            "source": self.source,
            "prompt": self.prompt,
            "cfg_scale": self.cfg_scale,
            "episodes": n,
            "successes": k,
            "success_rate": k / n if n else 0.0,
            "ci95": list(wilson_interval(k, n)),
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
            "seeds": [o.seed for o in self.outcomes],
            "success": [o.success for o in self.outcomes],
            "steps": [o.steps for o in self.outcomes],
        }


def compare(baseline: ArmResult, arm: ArmResult) -> dict:
    """Paired difference arm - baseline over the same seeds, with McNemar's exact p-value."""
    a = [o.success for o in baseline.outcomes]
    b = [o.success for o in arm.outcomes]
    counts = paired_counts(a, b)
    return {
        "arm": arm.name,
        "baseline": baseline.name,
        "difference": (sum(b) - sum(a)) / len(a) if a else 0.0,
        "both": counts["both"],
        "only_baseline": counts["only_first"],
        "only_arm": counts["only_second"],
        "neither": counts["neither"],
        "mcnemar_p": mcnemar_exact(counts["only_first"], counts["only_second"]),
    }


@dataclass
class EvalResult:
    arms: list[ArmResult]
    comparisons: list[dict]
    env: EnvSettings
    seconds: float
    report: dict
    mlflow_run: str | None = None


def summary_lines(result: EvalResult) -> list[str]:
    lines = [
        f"{len(result.arms[0].outcomes)} episodes per arm, seeds "
        f"{result.report['seeds'][0]}..{result.report['seeds'][1]}, {result.env.task} "
        f"({result.env.action_mode} actions, {result.env.image_size} px, {result.env.fps} fps)"
    ]
    for arm in result.arms:
        s = arm.summary()
        lo, hi = s["ci95"]
        steps = s["mean_steps_to_success"]
        lines.append(
            f"  {arm.name}: success {s['success_rate']:.1%} ({s['successes']}/{s['episodes']}; "
            f"Wilson 95% {lo:.1%}-{hi:.1%}), mean steps to success "
            + (f"{steps:.1f}" if steps is not None else "-")
        )
    for c in result.comparisons:
        lines.append(
            f"  {c['arm']} - {c['baseline']}: {c['difference']:+.1%} (paired: "
            f"{c['only_arm']} seeds only it, {c['only_baseline']} only the baseline), "
            f"McNemar p = {c['mcnemar_p']:.3g}"
        )
    return lines


def log_evaluation(uri: str, cfg: EvalConfig, result: EvalResult) -> str:
    import mlflow

    allow_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("flywheel-eval-policy")
    with mlflow.start_run(run_name=cfg.name or result.arms[0].name) as active:
        mlflow.log_params(
            {
                "checkpoint": cfg.checkpoint,
                "episodes": cfg.episodes,
                "seed": cfg.seed,
                "prompt": cfg.prompt or "the checkpoint's",
                "cfg_scale": cfg.cfg_scale,
                "compare": json.dumps(cfg.compare)[:500],
                **{f"env_{k}": v for k, v in asdict(result.env).items()},
            }
        )
        for i, arm in enumerate(result.arms):
            s = arm.summary()
            mlflow.log_metrics(
                {
                    f"arm{i}_success_rate": s["success_rate"],
                    f"arm{i}_ci95_low": s["ci95"][0],
                    f"arm{i}_ci95_high": s["ci95"][1],
                    **(
                        {f"arm{i}_mean_steps_to_success": s["mean_steps_to_success"]}
                        if s["mean_steps_to_success"] is not None
                        else {}
                    ),
                }
            )
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "report.json").write_text(json.dumps(result.report, indent=2))
            mlflow.log_artifact(str(Path(d) / "report.json"))
            for i, arm in enumerate(result.arms):
                for ep in arm.outcomes:
                    if ep.video is None:
                        continue
                    folder = Path(d) / f"arm{i}"
                    folder.mkdir(exist_ok=True)
                    video = folder / f"seed_{ep.seed}_{'success' if ep.success else 'fail'}.mp4"
                    video.write_bytes(ep.video)
                    mlflow.log_artifact(str(video), artifact_path=f"videos/arm{i}")
        return f"MLflow run {active.info.run_id} (experiment 'flywheel-eval-policy', store {uri})"
