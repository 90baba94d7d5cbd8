"""`flywheel train-estimator DATASET --variant kai0|pi06`: Stage 1 on Ray Train (DDP).

Data: every worker takes its own shard of the training episodes (episode i goes to worker
i mod N) and decodes only those, once, into memory at the model's input size (64 x 64 by
default: 12 KB per camera per frame). A pair needs two arbitrary frames of one episode, so a
worker needs random access inside its episodes: a per-worker episode cache gives it without
any worker decoding the whole dataset, where streaming Ray Data shards would deliver frames in
order and would have to be re-assembled into episodes anyway. Each step every worker samples
`--batch-size` pairs from its shard; DDP averages the gradients.

Checkpoints (model, optimizer, step) every `--checkpoint-every` steps in
`--storage/--name`; running the same command again resumes from the last one (Ray Train V2:
same name and storage), and a worker that dies mid-run is replaced and the group resumes from
the last checkpoint (`--max-failures`). Rank 0 logs the losses, the held-out evaluation
(Spearman correlation of the predicted value with stage_progress_gt) and a PNG of predicted
against true progress on held-out episodes to MLflow.

Also `python -m pipelines.train_estimator` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, parquet_column_names
from pipelines.estimator.model import VARIANTS, EstimatorConfig
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import check_job_output
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import (
    check_resume,
    fit,
    learning_rate,
    load_state,
    meta_name,
    read_meta,
    report_if_finished,
    resume_in_worker,
    write_checkpoint,
)

KIND = "estimator"
CHECKPOINT_META = meta_name(KIND)


@dataclass
class TrainConfig:
    dataset: str
    variant: str = "kai0"
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: int | None = None
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 64
    encoder: str = "resnet_small"
    checkpoint_every: int = 200
    holdout: float = 0.2
    seed: int = 0
    name: str | None = None
    storage: str = "flywheel-runs"
    max_failures: int = 2
    ray_address: str | None = None
    mlflow: bool = True
    episodes: list[int] | None = field(default=None, repr=False)  # default: all

    @property
    def run_name(self) -> str:
        return self.name or f"estimator-{self.variant}"


# --------------------------------------------------------------------------- the worker loop


def evaluate(model, frames: list, variant: str, device) -> tuple[np.ndarray, np.ndarray]:
    """Predicted value (frame 0 -> frame i) and true stage_progress_gt on held-out episodes."""
    import torch

    predicted, true = [], []
    model.eval()
    with torch.no_grad():
        for ep in frames:
            n = len(ep)
            if variant == "kai0":
                images = np.stack([ep.images[[0, i]] for i in range(n)])
                state = np.stack([ep.state[[0, i]] for i in range(n)])
            else:
                images, state = ep.images[:, None], ep.state[:, None]
            values = []
            for a in range(0, n, 128):
                out = model(
                    torch.from_numpy(images[a : a + 128]).to(device),
                    torch.from_numpy(state[a : a + 128]).to(device),
                )
                values.append(out.float().cpu().numpy())
            v = np.concatenate(values)
            v[0] = 0.0
            predicted.append(v)
            true.append(ep.progress)
    model.train()
    return np.concatenate(predicted), np.concatenate(true)


def progress_figure(predicted: np.ndarray, true: np.ndarray, spearman: float, step: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, predicted, s=3, alpha=0.4)
    ax.plot([0, 1], [0, 1], color="red", lw=1)
    ax.set_xlabel("true stage_progress_gt")
    ax.set_ylabel("predicted value (frame 0 -> frame)")
    ax.set_title(f"held-out episodes, step {step}: Spearman {spearman:.3f}", fontsize=9)
    return fig


def train_loop(config: dict) -> None:
    """Ray Train worker: DDP training on this worker's episode shard (module docstring)."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model
    from scipy.stats import spearmanr

    from pipelines.estimator.data import load_episode, training_batch
    from pipelines.estimator.model import AdvantageEstimator

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    device = get_device()
    mcfg = EstimatorConfig(**config["model"])
    ds = LeRobotDataset(config["dataset"])
    shard = config["train_episodes"][rank::world]
    t0 = time.time()
    frames = [load_episode(ds, e, mcfg.cameras, mcfg.image_size) for e in shard]
    decode_s = time.time() - t0

    model = AdvantageEstimator(mcfg)
    model = prepare_model(model)  # DDP across workers, on this worker's device
    plain = model.module if hasattr(model, "module") else model
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    steps = config["steps"]
    start = 0
    checkpoint, state = resume_in_worker(device)
    if state:
        plain.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])

    if report_if_finished(start, steps, checkpoint, rank):
        return

    mlflow = None
    if config["mlflow_uri"]:
        from ray.air.integrations.mlflow import setup_mlflow

        from pipelines.runtime.tracking import allow_store

        allow_store(config["mlflow_uri"])
        mlflow = setup_mlflow(
            {k: v for k, v in config.items() if k not in ("train_episodes", "held_episodes")},
            tracking_uri=config["mlflow_uri"],
            experiment_name="flywheel-train-estimator",
            run_name=config["run_name"],
            create_experiment_if_not_exists=True,
        )

    rng = np.random.default_rng([config["seed"], rank, start])
    losses, t_last, samples = [], time.time(), 0
    for step in range(start, steps):
        images, state_b, target = training_batch(frames, config["batch_size"], rng, mcfg.variant)
        pred = model(torch.from_numpy(images).to(device), torch.from_numpy(state_b).to(device))
        loss = torch.nn.functional.mse_loss(pred, torch.from_numpy(target).to(device))
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, config["lr"])
        opt.step()
        losses.append(float(loss.detach()))
        samples += len(target)
        done = step + 1
        if done % config["checkpoint_every"] and done != steps:
            continue
        elapsed = time.time() - t_last
        metrics = {
            "step": done,
            "loss": float(np.mean(losses)),
            "samples_per_s": samples * world / elapsed,  # all workers together
            "resumed_from": start,
            "decode_s": decode_s,
        }
        losses, samples, t_last = [], 0, time.time()
        if done == steps and rank == 0 and config["held_episodes"]:
            held = [
                load_episode(ds, e, mcfg.cameras, mcfg.image_size) for e in config["held_episodes"]
            ]
            predicted, true = evaluate(plain, held, mcfg.variant, device)
            metrics["eval_spearman"] = float(spearmanr(predicted, true).statistic)
            metrics["eval_mae"] = float(np.abs(predicted - true).mean())
            if mlflow is not None:
                fig = progress_figure(predicted, true, metrics["eval_spearman"], done)
                mlflow.log_figure(fig, "predicted_vs_true_progress.png")
        if mlflow is not None:
            mlflow.log_metrics(metrics, step=done)
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                state = {"model": plain.state_dict(), "optimizer": opt.state_dict(), "step": done}
                meta = {
                    "step": done,
                    "variant": mcfg.variant,
                    "model": mcfg.to_dict(),
                    "dataset": config["dataset"],
                    "metrics": metrics,
                }
                write_checkpoint(d, KIND, state, meta)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
    if mlflow is not None:
        mlflow.end_run()


# --------------------------------------------------------------------------- the driver


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode, its EstimatorConfig, step) from a checkpoint directory."""

    from pipelines.estimator.model import AdvantageEstimator

    meta = read_meta(path, KIND)
    mcfg = EstimatorConfig(**meta["model"])
    model = AdvantageEstimator(mcfg)
    model.load_state_dict(load_state(path)["model"])
    model.eval()
    return model, mcfg, int(meta["step"])


def check_dataset(
    ds: LeRobotDataset,
    episodes: list[int],
    columns: tuple[str, ...] = ("observation.state", "stage_progress_gt"),
    data_dir: str = "data",
) -> list[str]:
    """The cameras to use; a DatasetError for what the estimator cannot work with.

    Training needs `stage_progress_gt`; estimation (new data) only `observation.state`.
    """
    cameras = ds.camera_keys
    if not cameras:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")
    if not episodes:
        raise DatasetError(f"{ds.root}: no episodes")
    if "observation.state" not in ds.features:
        raise DatasetError(f"{ds.root}/meta/info.json: no 'observation.state' feature")
    # every file readable, with the columns (footers only: fast; v3.0 files hold many episodes)
    files: dict = {}
    for e in episodes:
        files.setdefault(ds.data_file(e, data_dir), e)
    for path, e in files.items():
        if not path.exists():
            raise DatasetError(f"{ds.relative(path)}: missing (episode {e})")
        names = parquet_column_names(path)
        for col in columns:
            if col not in names:
                raise DatasetError(f"{ds.relative(path)}: missing column {col!r}")
    for key in cameras:  # fail fast on a video this machine cannot decode
        next(iter(ds.iter_camera_frames(episodes[0], key, data_dir)))
    return cameras


@dataclass
class TrainResult:
    checkpoint: str
    step: int
    metrics: dict
    seconds: float


def run(cfg: TrainConfig) -> TrainResult:
    t0 = time.time()
    if cfg.variant not in VARIANTS:
        raise DatasetError(f"--variant {cfg.variant!r}: one of {VARIANTS}")
    for name, value, low in (
        ("--workers", cfg.workers, 1),
        ("--steps", cfg.steps, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--checkpoint-every", cfg.checkpoint_every, 1),
        ("--gpus-per-worker", cfg.gpus_per_worker, 0),
        ("--cpus-per-worker", cfg.cpus_per_worker or 1, 1),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")
    if not cfg.lr > 0:
        raise DatasetError(f"--lr {cfg.lr}: must be positive")
    if cfg.max_failures < -1:
        raise DatasetError(f"--max-failures {cfg.max_failures}: -1 (no limit) or more")
    if not 0 <= cfg.holdout < 1:
        raise DatasetError(f"--holdout {cfg.holdout}: a share of the episodes in [0, 1)")
    check_job_output(cfg.storage, "--storage")
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    ds = LeRobotDataset(cfg.dataset)
    episodes = cfg.episodes if cfg.episodes is not None else ds.episode_indices
    cameras = check_dataset(ds, episodes)
    train, held = (episodes, []) if cfg.holdout <= 0 else _split(episodes, cfg)
    if not train:
        raise DatasetError(f"{ds.root}: no training episodes left after the held-out split")

    model = EstimatorConfig(
        variant=cfg.variant,
        cameras=cameras,
        image_size=cfg.image_size,
        encoder=cfg.encoder,
        state_dim=int(ds.features["observation.state"]["shape"][0]),
    )
    # the run exists: it resumes, so it must be the same model
    previous = check_resume(Path(cfg.storage) / cfg.run_name, KIND, model.to_dict(), cfg.run_name)
    if previous is not None and previous["step"] >= cfg.steps:  # finished: nothing to train
        metrics = {**previous["metrics"], "resumed_from": previous["step"]}
        return TrainResult(previous["path"], previous["step"], metrics, time.time() - t0)

    from pipelines.runtime.cluster import cluster_cpus, connect

    connect(cfg.ray_address)
    cpus = cfg.cpus_per_worker or max(1, cluster_cpus() // max(cfg.workers, 1))
    loop_config = {
        **{k: v for k, v in asdict(cfg).items() if k not in ("episodes", "ray_address")},
        "dataset": str(ds.root.resolve()),
        "model": model.to_dict(),
        "threads": cpus,
        "train_episodes": train,
        "held_episodes": held,
        "run_name": cfg.run_name,
        "mlflow_uri": mlflow_uri,
    }
    result = fit(
        train_loop,
        loop_config,
        workers=cfg.workers,
        cpus_per_worker=cpus,
        gpus_per_worker=cfg.gpus_per_worker,
        name=cfg.run_name,
        storage=cfg.storage,
        max_failures=cfg.max_failures,
    )
    if result.checkpoint is None:
        raise DatasetError(f"{cfg.storage}/{cfg.run_name}: training ended without a checkpoint")
    meta = read_meta(result.checkpoint.path, KIND)
    return TrainResult(
        result.checkpoint.path, meta["step"], result.metrics or meta["metrics"], time.time() - t0
    )


def _split(episodes, cfg):
    from pipelines.runtime.training import split_episodes

    return split_episodes(episodes, cfg.holdout, cfg.seed)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("--variant", choices=VARIANTS, default="kai0")
    p.add_argument("--workers", type=int, default=2, help="DDP workers (default 2)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument(
        "--cpus-per-worker",
        type=int,
        default=None,
        help="default: the cluster's CPUs divided among the workers",
    )
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32, help="pairs per worker per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--holdout", type=float, default=0.2, help="share of held-out episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="run name (default estimator-<variant>)")
    p.add_argument("--storage", default="flywheel-runs", help="where runs and checkpoints go")
    p.add_argument("--max-failures", type=int, default=2)
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-estimator") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = TrainConfig(
        **{k: v for k, v in vars(args).items() if k != "no_mlflow"}, mlflow=not args.no_mlflow
    )
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    if m.get("resumed_from") == result.step:
        print(f"{cfg.run_name} is already trained to step {result.step} (--steps {cfg.steps})")
        print(f"Checkpoint: {result.checkpoint}")
        return 0
    print(
        f"Trained {cfg.variant} to step {result.step} in {result.seconds:.0f} s: "
        f"loss {m.get('loss', float('nan')):.4f}"
        + (f", held-out Spearman {m['eval_spearman']:.3f}" if "eval_spearman" in m else "")
    )
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.train_estimator"))
