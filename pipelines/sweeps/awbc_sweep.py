"""The `awbc` sweep: each trial labels its own copy of the dataset, trains AWBC, evaluates it.

Each trial copies the dataset into its own folder (data and metadata copied, videos hard-linked
or copied: the user's dataset is never touched and no two trials share a label), labels the
copy (`flywheel label`), trains the policy (`flywheel train-policy`, whose Ray Train run gets a
`TuneReportCallback`: every checkpoint report is a Tune iteration, so ASHA sees the training
L1 and stops the trials that lag) and evaluates it (`flywheel eval-policy`) on the same seeds
as every other trial. The metric is the success rate.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from pipelines.dataset import DatasetError, LeRobotDataset, atomic_write_json, fsync_path
from pipelines.evaluation import run as evaluate_policies
from pipelines.labeling import LabelConfig
from pipelines.labeling import run as label_dataset
from pipelines.policy.config import PolicyTrainConfig
from pipelines.policy.training import run as train_policy
from pipelines.runtime.flags import config_from_flags
from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.space import Param
from pipelines.sweeps.trials import (
    TrialSetup,
    eval_config,
    outside_trial,
    quiet,
    success_metrics,
)


@dataclass(frozen=True)
class AwbcTrialSetup(TrialSetup):
    dataset: str = ""  # the user's dataset (absolute), copied by every trial


class AwbcSweep(SweepKind):
    name = "awbc"
    inputs = ("DATASET",)
    params = (
        Param("threshold", float, 0, 100),
        Param("n_slices", int, 2),
        Param("cfg_scale", float, 0),
    )
    required = "threshold"
    metric = "success_rate"
    metrics = ("success_rate", "successes", "episodes", "ci95_low", "ci95_high", "l1", "heldout_l1")
    spec_fields = (
        "steps",
        "every",
        "workers",
        "batch_size",
        "image_size",
        "eval_episodes",
        "eval_seed",
    )
    uses_ray_data = True

    def trial_needs(self, cfg: SweepConfig) -> dict[str, float]:
        t = cfg.trial  # the Train run (labeling and evaluation tasks take fewer)
        need = {"CPU": float(t.workers * t.cpus_per_worker)}
        if t.gpus_per_worker:
            need["GPU"] = t.workers * t.gpus_per_worker
        return need

    def check_inputs(self, cfg: SweepConfig) -> None:
        ds = LeRobotDataset(cfg.inputs[0])
        if not ds.episode_indices:
            raise DatasetError(f"{ds.root}: no episodes")
        if not ds.camera_keys:
            raise DatasetError(f"{ds.root}/meta/info.json: no camera features")

    def schedule(self, cfg: SweepConfig) -> tuple[int, str, str]:
        # the training L1 of every checkpoint report, then the evaluation
        return math.ceil(cfg.trial.steps / cfg.trial.every) + 1, "l1", "min"

    def trainable(self, cfg: SweepConfig, params: list[str], out: Callable) -> Callable:
        setup = AwbcTrialSetup(
            tuple(params),
            str(cfg.sweep_dir / "trials"),
            cfg.trial,
            dataset=str(Path(cfg.inputs[0]).resolve()),
        )
        return ray.tune.with_parameters(awbc_trial, setup=setup)


def copy_dataset(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A private copy of a dataset: videos hard-linked (copied across file systems), every
    other file copied. Built beside `dst`, fsynced (files and folders), renamed into place and
    the parent folder fsynced, so a copy interrupted halfway (or by a power loss) is started
    again, and a finished one is kept whole."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(a: str, b: str) -> None:
        if "videos" in Path(a).relative_to(src).parts[:1]:
            try:
                os.link(a, b)
                return
            except OSError:
                pass
        shutil.copy2(a, b)

    shutil.copytree(src, tmp, copy_function=link_or_copy)
    for folder, _dirs, files in os.walk(tmp):  # the copy's data and names, before the rename
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)
    os.replace(tmp, dst)
    fsync_path(dst.parent)
    return dst


def awbc_trial(config: dict, setup: AwbcTrialSetup) -> None:
    """One AWBC trial: copy, label, train (Tune sees the reports), evaluate, report."""
    params, folder = setup.start(config)
    t = setup.settings
    dataset = copy_dataset(setup.dataset, folder / "dataset")
    labeled = folder / "labeled.json"
    label_cfg = config_from_flags(
        LabelConfig,
        {
            "dataset": str(dataset),
            "threshold": float(params["threshold"]),
            "discretion_type": "n_slices" if "n_slices" in params else "binary",
            "n_slices": int(params.get("n_slices", 10)),
            "mlflow": False,
        },
    )
    if not labeled.exists():  # labeling is a commit: a killed one is finished by the rerun
        outside_trial(label_dataset, label_cfg, out=quiet)
        atomic_write_json(labeled, asdict(label_cfg))
    train_cfg = config_from_flags(
        PolicyTrainConfig,
        {
            "dataset": str(dataset),
            "workers": t.workers,
            "cpus_per_worker": t.cpus_per_worker,
            "gpus_per_worker": t.gpus_per_worker,
            "steps": t.steps,
            "checkpoint_every": t.every,
            "batch_size": t.batch_size,
            "image_size": t.image_size,
            "name": "policy",
            "storage": str(folder / "runs"),
            "max_failures": 1,
            "mlflow": False,
        },
    )
    trained = train_policy(train_cfg, callbacks=[TuneReportCallback()])
    evaluated = outside_trial(
        evaluate_policies,
        eval_config(trained.checkpoint, t, folder, cfg_scale=float(params.get("cfg_scale", 1.0))),
        out=quiet,
    )
    ray.tune.report(
        {
            **success_metrics(evaluated),
            "l1": float(trained.metrics.get("l1", math.nan)),
            "heldout_l1": float(trained.metrics.get("heldout_l1", math.nan)),
            "step": trained.step,
            "checkpoint": trained.checkpoint,
        }
    )
