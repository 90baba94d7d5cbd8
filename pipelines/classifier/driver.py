"""Training the reward classifier on Ray Train (DDP); `flywheel train-classifier` calls `run`.

Labels come from a success-frames CSV (`--labels`) or the dataset's `next.reward`
(`pipelines.classifier.labels`); the driver reads and checks them all before any worker starts,
and hands each worker its episodes' labels.

Data: the episodes are split, with `--seed`, into training and held-out episodes (`--holdout`);
the held-out ones are split again, alternately, into validation episodes (the threshold is
chosen on them) and test episodes (the reported accuracy, precision and recall are measured on
them, at that threshold), so no figure is measured on the frames that chose it (a single held-
out episode has to do both, and the threshold rule says so). Each DDP worker decodes only its
own shard of the training episodes (episodes with success frames and without dealt round-robin
separately, so every worker sees both classes), once, at the model's input size (128 x 128 by
default: 48 KB per camera per frame). Each step every worker draws a class-balanced batch from
its shard (half success frames), shifts every image at random (pad 4, edge pixels repeated) and
takes a BCE-with-logits step; DDP averages the gradients.

Checkpoints every `--checkpoint-every` steps in `--storage/--name`; the same command again
resumes from the last one (Ray Train V2: same name and storage); a run name holding another
model or other labels is refused. At the last step rank 0 scores the validation and test
episodes, chooses the threshold (best F1, or the lowest threshold with `--min-precision`),
stores it in the final checkpoint and logs to MLflow: losses, samples/s, accuracy, precision
and recall on validation and test frames, `confusion.tsv` and `precision_recall.png`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.classifier.labels import (
    REWARD,
    EpisodeLabels,
    check_against,
    from_reward,
    read_success_csv,
)
from pipelines.classifier.model import KIND, ClassifierConfig
from pipelines.dataset import DatasetError, LeRobotDataset, parquet_column_names
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import (
    check_resume,
    fit,
    learning_rate,
    read_meta,
    report_if_finished,
    resume_in_worker,
    write_checkpoint,
)


@dataclass
class TrainConfig:
    dataset: str
    labels: str | None = None  # a success-frames CSV; None: the dataset's next.reward
    encoder: str = "small_convnet"
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: int | None = None
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    image_size: int = 128
    shift: int = 4
    checkpoint_every: int = 500
    holdout: float = 0.2
    min_precision: float | None = None
    seed: int = 0
    name: str | None = None
    storage: str = "flywheel-runs"
    max_failures: int = 2
    ray_address: str | None = None
    mlflow: bool = True
    episodes: list[int] | None = field(default=None, repr=False)  # default: every labeled one

    @property
    def run_name(self) -> str:
        return self.name or f"classifier-{self.encoder}"

    def validate(self) -> None:
        for flag, value, low in (
            ("--workers", self.workers, 1),
            ("--steps", self.steps, 1),
            ("--batch-size", self.batch_size, 2),
            ("--checkpoint-every", self.checkpoint_every, 1),
            ("--gpus-per-worker", self.gpus_per_worker, 0),
            ("--cpus-per-worker", self.cpus_per_worker or 1, 1),
            ("--shift", self.shift, 0),
        ):
            if value < low:
                raise DatasetError(f"{flag} {value}: at least {low}")
        if not 32 <= self.image_size <= 512:
            raise DatasetError(f"--image-size {self.image_size}: between 32 and 512")
        if not self.lr > 0:
            raise DatasetError(f"--lr {self.lr}: must be positive")
        if not self.weight_decay >= 0:
            raise DatasetError(f"--weight-decay {self.weight_decay}: must be >= 0")
        if self.max_failures < -1:
            raise DatasetError(f"--max-failures {self.max_failures}: -1 (no limit) or more")
        if not 0 <= self.holdout < 1:
            raise DatasetError(f"--holdout {self.holdout}: a share of the episodes in [0, 1)")
        if self.min_precision is not None and not 0 < self.min_precision <= 1:
            raise DatasetError(f"--min-precision {self.min_precision}: in (0, 1]")
        try:
            ClassifierConfig(cameras=["x"], encoder=self.encoder)
        except ValueError as e:
            raise DatasetError(f"--encoder: {e}") from None


# --------------------------------------------------------------------------- the worker loop


def predict(model, frames, device, batch: int = 256) -> np.ndarray:
    """Success probabilities of `Frames` (eval mode, no gradients)."""
    import torch

    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for a in range(0, len(frames), batch):
            x = torch.from_numpy(frames.images[a : a + batch]).to(device)
            out.append(torch.sigmoid(model(x)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def evaluate(model, ds, config: dict, cfg: ClassifierConfig, device, mlflow) -> dict:
    """Choose the threshold on the validation episodes, measure it on the test episodes."""
    from pipelines.classifier.data import Frames, load_frames
    from pipelines.classifier.metrics import (
        binary_metrics,
        choose_threshold,
        confusion_table,
        pr_figure,
    )

    def frames(episodes):
        parts = [
            load_frames(
                ds, EpisodeLabels.from_json(e, config["labels"][e]), cfg.cameras, cfg.image_size
            )
            for e in episodes
        ]
        return Frames.concat(parts, len(cfg.cameras), cfg.image_size)

    val, test = frames(config["validation_episodes"]), frames(config["test_episodes"])
    p_val, p_test = predict(model, val, device), predict(model, test, device)
    threshold, rule = choose_threshold(p_val, val.labels, config["min_precision"])
    if config["validation_episodes"] == config["test_episodes"] and len(test):
        rule += "; the one held-out episode also measures it"
    out = {"threshold": threshold, "threshold_rule": rule}
    for prefix, probs, f in (("val", p_val, val), ("test", p_test, test)):
        if len(f):
            m = binary_metrics(probs, f.labels, threshold)
            out.update({f"{prefix}_{k}": v for k, v in m.items()})
    if mlflow is not None and len(test):
        m = binary_metrics(p_test, test.labels, threshold)
        mlflow.log_text(confusion_table(m), "confusion.tsv")
        title = (
            f"test episodes: accuracy {m['accuracy']:.4f}, precision {m['precision']:.4f}, "
            f"recall {m['recall']:.4f}"
        )
        if test.labels.any():
            mlflow.log_figure(
                pr_figure(p_test, test.labels, threshold, title), "precision_recall.png"
            )
    return out


def train_loop(config: dict) -> None:
    """Ray Train worker: DDP training on this worker's episode shard (module docstring)."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    from pipelines.classifier.data import (
        Frames,
        balanced_indices,
        load_frames,
        random_shift,
    )
    from pipelines.classifier.model import RewardClassifier

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    device = get_device()
    mcfg = ClassifierConfig(**config["model"])
    ds = LeRobotDataset(config["dataset"])
    shard = config["shards"][rank]
    t0 = time.time()
    parts = [
        load_frames(
            ds, EpisodeLabels.from_json(e, config["labels"][e]), mcfg.cameras, mcfg.image_size
        )
        for e in shard
    ]
    frames = Frames.concat(parts, len(mcfg.cameras), mcfg.image_size)
    decode_s = time.time() - t0

    model = prepare_model(RewardClassifier(mcfg))  # DDP across workers, on this worker's device
    plain = model.module if hasattr(model, "module") else model
    opt = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
    )
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
    if config["mlflow_uri"] and rank == 0:
        from ray.air.integrations.mlflow import setup_mlflow

        from pipelines.runtime.tracking import allow_store

        allow_store(config["mlflow_uri"])
        mlflow = setup_mlflow(
            {
                k: v
                for k, v in config.items()
                if k not in ("labels", "shards") and "episodes" not in k
            },
            tracking_uri=config["mlflow_uri"],
            experiment_name="flywheel-train-classifier",
            run_name=config["run_name"],
            create_experiment_if_not_exists=True,
        )

    rng = np.random.default_rng([config["seed"], rank, start])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses, t_last, samples = [], time.time(), 0
    model.train()
    for step in range(start, steps):
        idx = balanced_indices(frames.labels, config["batch_size"], rng)
        images = torch.from_numpy(random_shift(frames.images[idx], config["shift"], rng))
        target = torch.from_numpy(frames.labels[idx].astype(np.float32)).to(device)
        loss = loss_fn(model(images.to(device)), target)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, config["lr"])
        opt.step()
        losses.append(float(loss.detach()))
        samples += len(idx)
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
            "train_frames": config["train_positive_frames"] + config["train_negative_frames"],
        }
        losses, samples, t_last = [], 0, time.time()
        quality = {"threshold": 0.5, "threshold_rule": "default 0.5 (training not finished)"}
        if done == steps and rank == 0:
            quality = evaluate(plain, ds, config, mcfg, device, mlflow)
            metrics.update({k: v for k, v in quality.items() if k != "threshold_rule"})
        if mlflow is not None:
            mlflow.log_metrics(metrics, step=done)
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                state = {"model": plain.state_dict(), "optimizer": opt.state_dict(), "step": done}
                meta = {
                    "step": done,
                    "name": config["run_name"],
                    "model": mcfg.to_dict(),
                    "run": config["identity"],
                    "threshold": quality["threshold"],
                    "threshold_rule": quality["threshold_rule"],
                    "labels": config["label_source"],
                    "dataset": config["dataset"],
                    "validation_episodes": config["validation_episodes"],
                    "test_episodes": config["test_episodes"],
                    "metrics": metrics,
                }
                write_checkpoint(d, KIND, state, meta)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
    if mlflow is not None:
        mlflow.end_run()


# --------------------------------------------------------------------------- the driver


def read_labels(
    ds: LeRobotDataset, csv_path: str | None, episodes: list[int] | None
) -> tuple[dict[int, EpisodeLabels], str, list[int]]:
    """(labels per episode, the label source, dataset episodes left unlabeled); all checked."""
    known = ds.episode_indices
    if episodes is not None:
        unknown = sorted(set(episodes) - set(known))
        if unknown:
            raise DatasetError(f"{ds.root}: episodes {unknown} are not in the dataset")
    wanted = list(known if episodes is None else episodes)
    files: dict = {}
    for e in wanted:
        files.setdefault(ds.data_file(e), e)
    for path, e in files.items():  # every file readable (footers only)
        if not path.exists():
            raise DatasetError(f"{ds.relative(path)}: missing (episode {e})")
        names = parquet_column_names(path)
        if csv_path is None and REWARD not in names:
            raise DatasetError(
                f"{ds.relative(path)}: no {REWARD!r} column to label from (give --labels CSV)"
            )
    if csv_path is not None:
        path = Path(csv_path)
        labels = read_success_csv(path)
        check_against(labels, {e: ds.episode_length(e) for e in known}, str(path))
        chosen = {e: labels[e] for e in wanted if e in labels}
        return chosen, str(path.resolve()), [e for e in wanted if e not in labels]
    chosen = {}
    from pipelines.dataset import column_to_numpy

    for e in wanted:
        table = ds.read_episode(e, [REWARD])
        where = f"{ds.relative(ds.data_file(e))} (episode {e})"
        chosen[e] = from_reward(e, column_to_numpy(table, REWARD), where)
    return chosen, REWARD, []


def split_held_out(held: list[int]) -> tuple[list[int], list[int]]:
    """(validation, test) episodes: alternately; a single held-out episode serves as both."""
    held = sorted(held)
    if len(held) < 2:
        return held, held
    return held[0::2], held[1::2]


@dataclass
class TrainResult:
    checkpoint: str
    step: int
    metrics: dict
    seconds: float
    threshold: float
    threshold_rule: str
    unlabeled: list[int] = field(default_factory=list)


def run(cfg: TrainConfig) -> TrainResult:
    t0 = time.time()
    cfg.validate()
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    ds = LeRobotDataset(cfg.dataset)
    cameras = ds.camera_keys
    if not cameras:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")
    labels, source, unlabeled = read_labels(ds, cfg.labels, cfg.episodes)
    if not labels:
        raise DatasetError(f"{cfg.labels or ds.root}: no labeled episodes")
    from pipelines.runtime.training import split_episodes

    episodes = sorted(labels)
    train, held = (
        split_episodes(episodes, cfg.holdout, cfg.seed) if cfg.holdout > 0 else (episodes, [])
    )
    validation, test = split_held_out(held)
    success_frames, kept_frames = {}, {}
    for e in episodes:  # frames the classifier sees (reset frames excluded), success among them
        y, keep = labels[e].arrays(ds.episode_length(e))
        kept_frames[e], success_frames[e] = int(keep.sum()), int(y[keep].sum())
    pos = sum(success_frames[e] for e in train)
    neg = sum(kept_frames[e] - success_frames[e] for e in train)
    if not pos or not neg:
        what = "success" if not pos else "failure"
        raise DatasetError(
            f"{source}: no {what} frames in the {len(train)} training episodes "
            "(the classifier needs both)"
        )
    for key in cameras:  # fail fast on a codec OpenCV cannot decode
        next(iter(ds.iter_camera_frames(train[0], key)))

    model = ClassifierConfig(cameras=cameras, image_size=cfg.image_size, encoder=cfg.encoder)
    identity = {**model.to_dict(), "labels": source}
    previous = check_resume(Path(cfg.storage) / cfg.run_name, KIND, identity, cfg.run_name, "run")
    if previous is not None and previous["step"] >= cfg.steps:  # finished: nothing to train
        metrics = {**previous["metrics"], "resumed_from": previous["step"]}
        return TrainResult(
            previous["path"],
            previous["step"],
            metrics,
            time.time() - t0,
            previous.get("threshold", 0.5),
            previous.get("threshold_rule", ""),
            unlabeled,
        )

    from pipelines.classifier.data import shard_episodes
    from pipelines.runtime.cluster import cluster_cpus, connect

    connect(cfg.ray_address)
    cpus = cfg.cpus_per_worker or max(1, cluster_cpus() // max(cfg.workers, 1))
    shards = shard_episodes(train, {e for e in train if success_frames[e]}, cfg.workers)
    if any(not s for s in shards):
        raise DatasetError(
            f"--workers {cfg.workers}: only {len(train)} training episodes, one worker would "
            "have none"
        )
    loop_config = {
        **{k: v for k, v in asdict(cfg).items() if k not in ("episodes", "ray_address", "labels")},
        "dataset": str(ds.root.resolve()),
        "model": model.to_dict(),
        "identity": identity,
        "label_source": source,
        "labels": {e: labels[e].to_json() for e in episodes},
        "threads": cpus,
        "shards": shards,
        "validation_episodes": validation,
        "test_episodes": test,
        "train_positive_frames": pos,
        "train_negative_frames": neg,
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
        result.checkpoint.path,
        meta["step"],
        {**meta["metrics"], **(result.metrics or {})},
        time.time() - t0,
        meta["threshold"],
        meta["threshold_rule"],
        unlabeled,
    )
