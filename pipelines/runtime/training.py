"""The one training skeleton every Ray Train job in Flywheel runs: the worker loop and the driver.

A family supplies a `Trainer` subclass (its data, model, step, evaluation and checkpoint
config); `run_training` does the rest, the same way for every family:

* driver: refuse a rerun that would train another model under the same run name
  (`check_resume`), return a finished run unchanged, connect to the cluster, check that it has
  the CPUs and GPUs asked for (Ray would otherwise wait for them forever), run
  `train_loop_per_worker` on `workers` DDP workers (Ray Train V2, `fit`) and read the final
  checkpoint;
* worker (`train_loop_per_worker`, handed a `WorkerPlan`: the family's config dataclass and
  what the driver found): decode this worker's shard, build and DDP-wrap the model, resume from
  the run's latest checkpoint, then the step loop with the learning-rate schedule
  (`learning_rate`), a report and a checkpoint every `checkpoint_every` steps and at the end,
  the held-out evaluation at the last step, and MLflow logging from rank 0.

Every report has `step`, the mean losses since the last report, `samples_per_s` (all workers),
`resumed_from`, `decode_s`, `lr` and `cpu_seconds` (process time summed over the workers and
over resumed attempts, also kept in the checkpoint's state).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.dataset import DatasetError
from pipelines.runtime.checkpoints import (
    check_resume,
    load_state,
    read_meta,
    write_checkpoint,
)
from pipelines.runtime.cluster import cluster_cpus, connect, require
from pipelines.runtime.run_config import RunConfig
from pipelines.runtime.schedule import learning_rate
from pipelines.runtime.tracking import allow_store


@dataclass
class Worker:
    """Where a trainer runs: its rank among `world` workers, and its torch device."""

    rank: int
    world: int
    device: Any


@dataclass
class WorkerPlan:
    """What the driver hands every worker: the family's config and what the driver found."""

    trainer: type  # the family's Trainer subclass
    config: Any  # the family's config dataclass; its `run` field is a RunConfig
    job: Any  # the family's prepared job (a dataclass: dataset, model config, episodes ...)
    run_name: str
    threads: int
    mlflow_uri: str | None


class Trainer:
    """What a family supplies to the shared loop; the defaults train `self.plain` with AdamW.

    Subclasses set `kind` (the checkpoint kind) and `experiment` (MLflow) and implement
    `load_data`, `build_model`, `step`, and optionally `evaluate`, `report_metrics`,
    `checkpoint_meta` and `mlflow_params`.
    """

    kind: str = ""
    experiment: str = ""
    weight_decay: float = 1e-4

    def __init__(self, plan: WorkerPlan, worker: Worker):
        self.plan, self.config, self.job, self.worker = plan, plan.config, plan.job, worker
        self.run: RunConfig = plan.config.run

    # -- set-up
    def load_data(self) -> None:
        """Decode this worker's shard (timed as `decode_s`)."""
        raise NotImplementedError

    def build_model(self):
        """The model to train (plain torch; the loop wraps it in DDP)."""
        raise NotImplementedError

    def attach(self, module, plain) -> None:
        """Keep the DDP-wrapped `module` and its `plain` model; make the optimizer."""
        import torch  # torch only inside the workers: this module stays light

        self.module, self.plain = module, plain
        self.optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.run.lr, weight_decay=self.weight_decay
        )

    def state_dict(self) -> dict:
        return {"model": self.plain.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.plain.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    # -- training
    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        """One step: (losses by name, samples this worker trained on)."""
        raise NotImplementedError

    def optimize(self, loss, lr: float) -> float:
        """Backward and an optimizer step at learning rate `lr`; the loss as a float."""
        self.optimizer.zero_grad()
        loss.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return float(loss.detach())

    def report_metrics(self) -> dict:
        """Metrics of every report besides the shared ones."""
        return {}

    def evaluate(self, step: int, mlflow) -> dict:
        """Rank 0, at the last step: held-out metrics (and MLflow artifacts when logging)."""
        return {}

    def checkpoint_meta(self, step: int, metrics: dict) -> dict:
        """The checkpoint's JSON config."""
        return {"step": step, "metrics": metrics}

    def mlflow_params(self) -> dict:
        """The MLflow run's parameters: the config's fields (sections flattened), and more."""
        return {**flat_fields(self.config), "threads": self.plan.threads}


def flat_fields(config) -> dict:
    """A (nested) config dataclass's fields as one flat mapping (sections' fields inlined)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flat_fields(value))
        else:
            out[f.name] = value
    return out


# --------------------------------------------------------------------------- the worker


def resume_in_worker(device="cpu"):
    """Inside a Ray Train worker: (this run's latest checkpoint, its saved state), or
    (None, None) on a fresh run."""
    import ray.train  # inside the worker: the driver's import stays light

    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return None, None
    with checkpoint.as_directory() as d:
        return checkpoint, load_state(d, device)


def report_if_finished(start: int, steps: int, checkpoint, rank: int) -> bool:
    """A finished run started again (`start >= steps`): report its state unchanged, with its
    checkpoint from rank 0, and say so (the loop then has nothing to train)."""
    if start < steps:
        return False
    import ray.train  # as in resume_in_worker

    ray.train.report(
        {"step": start, "resumed_from": start}, checkpoint=checkpoint if rank == 0 else None
    )
    return True


def start_mlflow(plan: WorkerPlan, trainer: Trainer):
    """Rank 0's MLflow run (Ray's `setup_mlflow`), or None without a tracking URI."""
    if not plan.mlflow_uri or trainer.worker.rank != 0:
        return None
    from ray.air.integrations.mlflow import setup_mlflow  # mlflow: heavy, rank 0 only

    allow_store(plan.mlflow_uri)
    return setup_mlflow(
        trainer.mlflow_params(),
        tracking_uri=plan.mlflow_uri,
        experiment_name=trainer.experiment,
        run_name=plan.run_name,
        create_experiment_if_not_exists=True,
        rank_zero_only=True,
    )


def _cpu_total(start: float, before: float, world: int) -> float:
    import torch

    mine = torch.tensor([time.process_time() - start], dtype=torch.float64)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(mine)
    return before + float(mine[0])


def train_loop_per_worker(plan: WorkerPlan) -> None:
    """Ray Train worker: the family's trainer on this worker's shard (module docstring)."""
    import ray.train  # the worker's libraries, imported where they run
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    cpu0 = time.process_time()
    ctx = ray.train.get_context()
    run = plan.config.run
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(plan.threads)
    torch.manual_seed(run.seed)
    trainer: Trainer = plan.trainer(plan, Worker(rank, world, get_device()))
    t0 = time.time()
    trainer.load_data()
    decode_s = time.time() - t0
    module = prepare_model(trainer.build_model())  # DDP across workers, on this device
    trainer.attach(module, module.module if hasattr(module, "module") else module)
    start, cpu_before = 0, 0.0
    checkpoint, state = resume_in_worker(trainer.worker.device)
    if state:
        trainer.load_state_dict(state)
        start, cpu_before = int(state["step"]), float(state.get("cpu_seconds", 0.0))
    steps = run.steps
    if report_if_finished(start, steps, checkpoint, rank):
        return
    mlflow = start_mlflow(plan, trainer)
    rng = np.random.default_rng([run.seed, rank, start])
    sums: dict[str, float] = {}
    n_sum, samples, t_last = 0, 0, time.time()
    for step in range(start, steps):
        lr = learning_rate(step, steps, run.lr)
        losses, n = trainer.step(step, lr, rng)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        n_sum, samples, done = n_sum + 1, samples + n, step + 1
        if done % run.checkpoint_every and done != steps:
            continue
        metrics = {k: v / n_sum for k, v in sums.items()}
        metrics.update(
            step=done,
            samples_per_s=samples * world / (time.time() - t_last),  # all workers together
            resumed_from=start,
            decode_s=decode_s,
            lr=lr,
            cpu_seconds=_cpu_total(cpu0, cpu_before, world),
            **trainer.report_metrics(),
        )
        sums, n_sum, samples, t_last = {}, 0, 0, time.time()
        if done == steps and rank == 0:
            metrics.update(trainer.evaluate(done, mlflow))
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=done)
        if rank != 0:
            ray.train.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as d:
            state = {**trainer.state_dict(), "step": done, "cpu_seconds": metrics["cpu_seconds"]}
            write_checkpoint(d, trainer.kind, state, trainer.checkpoint_meta(done, metrics))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
    if mlflow is not None:
        mlflow.end_run()


# --------------------------------------------------------------------------- the driver


def fit(
    train_loop: Callable,
    loop_config: dict | None,
    *,
    workers: int,
    cpus_per_worker: int,
    gpus_per_worker: float,
    name: str,
    storage: str | os.PathLike,
    max_failures: int,
    keep: int = 2,
    callbacks: list | None = None,
):
    """Run `train_loop` on `workers` DDP workers (Ray Train V2); returns Ray's Result.

    The cluster must be connected. Asking for more CPUs or GPUs than it has is a ClusterError
    (unless FLYWHEEL_WAIT_FOR_RESOURCES=1, for autoscaling clusters). `callbacks`: extra Ray
    Train callbacks, such as the `TuneReportCallback` a sweep's trial passes so that Tune sees
    the run's reports.
    """
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig  # Ray Train: heavy
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker}
    require("CPU", workers * cpus_per_worker, f"--workers {workers} x {cpus_per_worker} CPU")
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
        require(
            "GPU",
            workers * gpus_per_worker,
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g}",
        )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=RayRunConfig(
            name=name,
            storage_path=str(Path(storage).resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep),
            callbacks=list(callbacks or []),
        ),
    )
    return trainer.fit()


@dataclass
class TrainingResult:
    """A run's final checkpoint: its path, step, last metrics and config, and the wall time."""

    checkpoint: str
    step: int
    metrics: dict
    seconds: float
    meta: dict = field(default_factory=dict, repr=False)


def training_summary(result: TrainingResult, run_name: str, steps: int, done: str) -> str:
    """A training job's first line: `done`, or that `run_name` was trained to `steps` already."""
    if result.metrics.get("resumed_from") == result.step:
        return f"{run_name} is already trained to step {result.step} (--steps {steps})"
    return done


ResumeCheck = tuple[str, dict, dict | None]
"""(key of the checkpoint's config, what this command wants there, defaults of newer keys)."""


def run_training(
    trainer: type[Trainer],
    config,
    job,
    *,
    run_name: str,
    resume: Sequence[ResumeCheck],
    mlflow_uri: str | None,
    started: float,
    callbacks: list | None = None,
    before_start: Callable[[], None] | None = None,
) -> TrainingResult:
    """Train (or resume, or return the finished) run `run_name` of `trainer` (module
    docstring); `config.run` is its RunConfig, `job` what every worker needs besides.
    `before_start`: the family's last checks, once the run is known not to be finished."""
    run: RunConfig = config.run
    run_dir = Path(run.storage) / run_name
    previous = None
    for key, wanted, defaults in resume:  # the run exists: it must be the same model
        previous = check_resume(run_dir, trainer.kind, wanted, run_name, key, defaults)
    if previous is not None and previous["step"] >= run.steps:  # finished: nothing to train
        metrics = {**previous["metrics"], "resumed_from": previous["step"]}
        seconds = time.time() - started
        return TrainingResult(previous["path"], previous["step"], metrics, seconds, previous)
    if before_start is not None:
        before_start()
    connect(run.ray_address)
    cpus = run.cpus_per_worker or max(1, cluster_cpus() // max(run.workers, 1))
    plan = WorkerPlan(trainer, config, job, run_name, cpus, mlflow_uri)
    result = fit(
        partial(train_loop_per_worker, plan),
        None,
        workers=run.workers,
        cpus_per_worker=cpus,
        gpus_per_worker=run.gpus_per_worker,
        name=run_name,
        storage=run.storage,
        max_failures=run.max_failures,
        callbacks=callbacks,
    )
    if result.checkpoint is None:
        raise DatasetError(f"{run.storage}/{run_name}: training ended without a checkpoint")
    meta = read_meta(result.checkpoint.path, trainer.kind)
    metrics = {**meta["metrics"], **(result.metrics or {})}
    return TrainingResult(
        result.checkpoint.path, meta["step"], metrics, time.time() - started, meta
    )
