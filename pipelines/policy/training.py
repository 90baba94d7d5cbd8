"""Stage 3: training the advantage-conditioned policy on Ray Train (DDP); `flywheel train-policy`.

The driver validates everything first (one pass over the needed columns of every episode
file, no pixels): labels when `--conditioning prompt`, the advantage column for `awr`,
rewards for `iql`, the data types, NaNs; it computes the normalization statistics (state, and
the action-chunk targets per chunk step) from the training episodes, so every worker
normalizes alike. Nothing is written before the first checkpoint.

Data: every worker takes its own shard of the training episodes (episode i to worker i mod N)
and decodes only those, once, into memory at the model's input size (64 x 64: 12 KB per camera
per frame; 200 episodes of two cameras are ~500 MB over all workers). A chunk target needs the
next ten frames of the same episode, and IQL the next frame: a per-worker episode cache gives
random access inside episodes without any worker decoding the whole dataset. Each step every
worker samples `batch_size` frames from its shard (uniformly, from the top-label frames only
with `drop_negative`, or each data type an equal share with `balance_data_types`); DDP
averages the gradients.

Checkpoints (kind "policy": model, optimizer, critics, step, config, normalization stats,
prompts, the joints' units the policy was trained in (`units`: the dataset's, from its
info.json or `--units`, `pipelines.dataset.units`; eval-policy converts at the simulator's edge)
and the simulator settings that eval-policy uses) every `checkpoint_every` steps in
`storage/name`; running the same command again resumes from the last one (Ray Train V2:
same name and storage; a run name that holds another model or recipe is refused with the
differences listed), and a worker that dies is replaced and the group resumes from the last
checkpoint (`max_failures`). Rank 0 logs parameters, losses, weight statistics, the held-out
L1 and a PNG of predicted against recorded actions on a held-out episode to MLflow.

CPU time: each worker measures its own `time.process_time()` (decoding included); the sum over
workers, accumulated across resumed attempts, is the checkpoint's `cpu_seconds`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.dataset.units import dataset_units
from pipelines.labeling.advantage import base_task
from pipelines.policy.config import (
    CONDITIONINGS,
    CURRICULA,
    KIND,
    SIM_TASKS,
    PolicyLearnerConfig,
    PolicyTrainConfig,
)
from pipelines.policy.data import (
    DATA_TYPES,
    FrameStore,
    PromptTable,
    chunk_indices,
    delta_timestamps,
    load_episode,
    parse_data_type_weights,
    sampling_probabilities,
)
from pipelines.policy.learner import Critic, PolicyLearner, TrainModule, make_batch
from pipelines.policy.model import ACTION_FRAMES, ChunkPolicy, PolicyConfig, tokenize
from pipelines.policy.scan import scan_dataset
from pipelines.policy.weighting import WEIGHTINGS, masked_l1
from pipelines.runtime.run_config import check_run
from pipelines.runtime.schedule import split_episodes
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import Trainer, TrainingResult, run_training
from pipelines.simulator.tasks import DEFAULT_TASK, task_of_text

# --------------------------------------------------------------------------- checks (driver)


def check_config(cfg: PolicyTrainConfig) -> None:
    """A one-line DatasetError for numbers and names the recipe cannot use."""
    learner, sampling, net = cfg.learner, cfg.sampling, cfg.network
    check_run(cfg.run)
    for name, value, low in (
        ("--chunk-size", net.chunk_size, 1),
        ("--n-action-steps", net.n_action_steps, 1),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if net.n_action_steps > net.chunk_size:
        raise DatasetError(
            f"--n-action-steps {net.n_action_steps}: at most --chunk-size {net.chunk_size}"
        )
    for name, value in (
        ("--lr", cfg.run.lr),
        ("--temperature", learner.temperature),
        ("--max-weight", learner.max_weight),
        ("--max-importance-weight", learner.max_importance_weight),
        ("--candidate-scale", learner.candidate_scale),
    ):
        if not (math.isfinite(value) and value > 0):
            raise DatasetError(f"{name} {value}: must be a positive number")
    for name, value in (
        ("--indicator-dropout", learner.indicator_dropout),
        ("--discount", learner.discount),
        ("--target-tau", learner.target_tau),
        ("--curriculum-min-propensity", sampling.curriculum_min_propensity),
        ("--curriculum-fraction", sampling.curriculum_fraction),
    ):
        if not 0 <= value <= 1:
            raise DatasetError(f"{name} {value}: must be between 0 and 1")
    if not 0 < learner.expectile < 1:
        raise DatasetError(f"--expectile {learner.expectile}: strictly between 0 and 1")
    if not 16 <= net.image_size <= 512:
        raise DatasetError(f"--image-size {net.image_size}: between 16 and 512")
    for name, value, choices in (
        ("--conditioning", learner.conditioning, CONDITIONINGS),
        ("--weighting", learner.weighting, WEIGHTINGS),
        ("--action-frame", net.action_frame, ACTION_FRAMES),
        ("--curriculum", sampling.curriculum, CURRICULA),
    ):
        if value not in choices:
            raise DatasetError(f"{name} {value!r}: one of {', '.join(choices)}")
    if cfg.sim_task is not None and cfg.sim_task not in SIM_TASKS:
        raise DatasetError(f"--sim-task {cfg.sim_task!r}: one of {', '.join(SIM_TASKS)}")
    if not cfg.data_dir or "/" in cfg.data_dir or cfg.data_dir in (".", ".."):
        raise DatasetError(f"--data-dir {cfg.data_dir!r}: a folder name inside the dataset")
    try:
        parse_data_type_weights(sampling.data_type_weights)
    except ValueError as e:
        raise DatasetError(f"--data-type-weights {sampling.data_type_weights!r}: {e}") from None


def split(episodes: list[int], cfg: PolicyTrainConfig) -> tuple[list[int], list[int]]:
    """(training, held-out) episodes: --holdout-episodes if given, else a --holdout share."""
    if cfg.holdout_episodes is not None:
        unknown = sorted(set(cfg.holdout_episodes) - set(episodes))
        if unknown:
            raise DatasetError(f"--holdout-episodes: episode(s) {unknown} not in the dataset")
        held = set(cfg.holdout_episodes)
        return [e for e in episodes if e not in held], sorted(held)
    return split_episodes(episodes, cfg.run.holdout, cfg.run.seed)


def infer_sim_task(tasks: dict[int, str]) -> str:
    """The simulated task a dataset's task text names (reach_grasp unless pick_lift's)."""
    return task_of_text(base_task(t) for t in tasks.values()) or DEFAULT_TASK


def env_settings(ds: LeRobotDataset, cfg: PolicyTrainConfig, action_dim: int) -> dict:
    """The simulator settings eval-policy rolls this policy out in (from the dataset)."""
    shape = ds.features[ds.camera_keys[0]].get("shape") or [128, 128, 3]
    return {
        "task": cfg.sim_task or infer_sim_task(ds.tasks),
        "image_size": int(shape[0]),
        "fps": int(round(ds.fps)),
        "action_mode": "ee_delta" if action_dim == 4 else "joint",
    }


# --------------------------------------------------------------------------- the worker


def action_figure(recorded: np.ndarray, predicted: np.ndarray, episode: int, step: int):
    """Recorded actions against the first action of each predicted chunk, per dimension."""
    import matplotlib  # plotting only at the end of a run, on rank 0

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = recorded.shape[1]
    cols = 3
    rows = (dims + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.6 * rows), squeeze=False)
    for d in range(rows * cols):
        ax = axes[d // cols][d % cols]
        if d >= dims:
            ax.axis("off")
            continue
        ax.plot(recorded[:, d], label="recorded", lw=1.2)
        ax.plot(predicted[:, d], label="predicted", lw=1.0)
        ax.set_title(f"action[{d}]", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"held-out episode {episode}, step {step}", fontsize=9)
    fig.tight_layout()
    return fig


def held_out_eval(
    policy, held: list[dict], prompts: PromptTable, conditioning: str, fps: float, device
):
    """Masked L1 on held-out episodes (normalized units), and the first one's action traces."""
    store = FrameStore.concat(held, [])
    c = policy.config
    tokens = tokenize(prompts.texts, c.prompt_vocab)
    table = prompts.bare if conditioning == "none" else prompts.labeled
    rows = table[store.task_index]
    losses, first = [], []
    policy.eval()
    with torch.no_grad():
        for a in range(0, len(store), 256):
            frames = np.arange(a, min(a + 256, len(store)))
            idx, pad = chunk_indices(
                frames, store.episode_end[frames], delta_timestamps(c.chunk_size, fps), fps
            )
            state = torch.from_numpy(store.state[frames]).to(device)
            pred = policy(
                torch.from_numpy(store.images[frames]).to(device),
                state,
                torch.from_numpy(tokens[rows[frames]]).to(device),
            )
            target = policy.normalize_chunk(torch.from_numpy(store.action[idx]).to(device), state)
            losses.append(masked_l1(pred, target, torch.from_numpy(pad).to(device)).cpu().numpy())
            first.append(policy.denormalize_chunk(pred, state)[:, 0].cpu().numpy())
    policy.train()
    n0 = len(held[0]["state"]) if held else 0
    return float(np.concatenate(losses).mean()), store.action[:n0], np.concatenate(first)[:n0]


@dataclass
class PolicyJob:
    """What the driver hands every worker besides the config."""

    dataset: str  # resolved path
    model: PolicyConfig
    learner: PolicyLearnerConfig  # the config's, with the dataset's fps
    advantage: str | None  # the advantage column (awr)
    stats: dict  # normalization statistics
    prompts: dict
    train_episodes: list[int]
    held_episodes: list[int]
    meta: dict  # the checkpoint's config, less step and metrics


class PolicyTrainer(Trainer):
    """The policy's part of the shared Ray Train loop (module docstring)."""

    kind = KIND
    experiment = "flywheel-train-policy"

    def load_data(self) -> None:
        job, cfg, m, w = self.job, self.config, self.job.model, self.worker
        self.ds = LeRobotDataset(job.dataset)
        shard = job.train_episodes[w.rank :: w.world]
        sampling = cfg.sampling
        selection = job.learner.importance_weights or sampling.curriculum == "propensity"
        store = FrameStore.concat(
            [
                load_episode(
                    self.ds, e, m.cameras, m.image_size, cfg.data_dir, job.advantage, selection
                )
                for e in shard
            ],
            shard,
        )
        self.store, self.prompts = store, PromptTable.from_dict(job.prompts)
        self.tokens = tokenize(self.prompts.texts, m.prompt_vocab)
        weights = parse_data_type_weights(sampling.data_type_weights)
        self.type_weights = np.array([weights[t] for t in DATA_TYPES] + [1.0], dtype=np.float32)
        pool = np.arange(len(store))
        if sampling.drop_negative:
            pool = np.flatnonzero(self.prompts.top[store.task_index])
        probs = sampling_probabilities(store.data_type[pool], sampling.balance_data_types)
        self.pool, self.probs = pool, probs
        # --curriculum propensity: the first steps draw only high-propensity (safe) actions
        self.early_pool, self.early_probs, self.early_steps = pool, probs, 0
        if sampling.curriculum == "propensity":
            early = pool[store.propensity[pool] >= sampling.curriculum_min_propensity]
            if len(early):
                self.early_pool = early
                self.early_probs = sampling_probabilities(
                    store.data_type[early], sampling.balance_data_types
                )
                self.early_steps = int(round(sampling.curriculum_fraction * self.run.steps))

    def build_model(self):
        m = self.job.model
        policy = ChunkPolicy(m)
        policy.set_normalization(self.job.stats)
        n_features = len(m.cameras) * m.feature_dim + m.state_dim
        iql = self.job.learner.weighting == "iql"
        return TrainModule(policy, Critic(n_features, m.action_dim) if iql else None)

    def attach(self, module, plain) -> None:
        self.module, self.plain = module, plain
        self.learner = PolicyLearner(module, plain, self.job.learner, self.run.lr)

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)

    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        early = step < self.early_steps
        pool, probs = (self.early_pool, self.early_probs) if early else (self.pool, self.probs)
        frames = rng.choice(pool, size=self.run.batch_size, p=probs)
        lcfg, m = self.job.learner, self.job.model
        batch = make_batch(
            self.store,
            frames,
            self.prompts,
            self.tokens,
            lcfg,
            m.chunk_size,
            self.type_weights,
            rng,
            lcfg.weighting == "iql",
        )
        return self.learner.step(batch, lr, self.worker.device), len(frames)

    def evaluate(self, step: int, mlflow) -> dict:
        job, m = self.job, self.job.model
        if not job.held_episodes:
            return {}
        held = [
            load_episode(self.ds, e, m.cameras, m.image_size, self.config.data_dir, None)
            for e in job.held_episodes
        ]
        l1, recorded, predicted = held_out_eval(
            self.plain.policy,
            held,
            self.prompts,
            job.learner.conditioning,
            job.learner.fps,
            self.worker.device,
        )
        if mlflow is not None:
            fig = action_figure(recorded, predicted, job.held_episodes[0], step)
            mlflow.log_figure(fig, "predicted_vs_recorded_actions.png")
        return {"heldout_l1": l1}

    def checkpoint_meta(self, step: int, metrics: dict) -> dict:
        return {**self.job.meta, "step": step, "metrics": metrics}

    def mlflow_params(self) -> dict:
        job = self.job
        return {
            **super().mlflow_params(),
            "train_episodes": len(job.train_episodes),
            "held_episodes": len(job.held_episodes),
        }


# --------------------------------------------------------------------------- the driver


def prepare(cfg: PolicyTrainConfig, episodes: list[int] | None = None) -> PolicyJob:
    """Every check before Ray starts; what every worker needs."""
    check_config(cfg)
    ds = LeRobotDataset(cfg.dataset)
    episodes = episodes if episodes is not None else ds.episode_indices
    if not episodes:
        raise DatasetError(f"{ds.root}: no episodes")
    train, held = split(episodes, cfg)
    if not train:
        raise DatasetError(f"{ds.root}: no training episodes left after the held-out split")
    state_shape = ds.features["observation.state"].get("shape", [0])
    action_shape = ds.features.get("action", {}).get("shape", [0])
    net = cfg.network
    action_frame = net.action_frame
    if action_frame == "relative" and list(state_shape) != list(action_shape):
        action_frame = "absolute"  # actions are not joint targets of the state's joints
    units = dataset_units(ds, cfg.units)
    scan = scan_dataset(ds, train + held, cfg, action_frame)
    for key in scan.cameras:  # fail fast on a codec OpenCV cannot decode
        next(iter(ds.iter_camera_frames(train[0], key, cfg.data_dir)))
    model = PolicyConfig(
        cameras=scan.cameras,
        state_dim=scan.state_dim,
        action_dim=scan.action_dim,
        chunk_size=net.chunk_size,
        image_size=net.image_size,
        encoder=net.encoder,
        action_frame=action_frame,
    )
    meta = {
        "kind": KIND,
        "model": model.to_dict(),
        "recipe": cfg.recipe,
        "normalization": scan.stats,
        "tasks": {str(k): v for k, v in sorted(ds.tasks.items())},
        "prompts": scan.prompts.to_dict(),
        "conditioning": cfg.learner.conditioning,
        "n_action_steps": net.n_action_steps,
        "env": env_settings(ds, cfg, scan.action_dim),
        "units": units.meta(),
        "unit": units.body,  # the body joints' (the gripper: range_0_100), as export reads it
        "dataset": str(ds.root.resolve()),
        "train_frames": scan.frames,
        "data_types": scan.data_types,
        "train_episodes": train,
        "held_episodes": held,
    }
    return PolicyJob(
        dataset=meta["dataset"],
        model=model,
        learner=replace(cfg.learner, fps=float(ds.fps)),
        advantage=cfg.advantage_column if cfg.learner.weighting == "awr" else None,
        stats=scan.stats,
        prompts=meta["prompts"],
        train_episodes=train,
        held_episodes=held,
        meta=meta,
    )


def run(
    cfg: PolicyTrainConfig, callbacks: list | None = None, episodes: list[int] | None = None
) -> TrainingResult:
    """Train (or resume) the policy; `callbacks`: extra Ray Train callbacks (a sweep's)."""
    t0 = time.time()
    mlflow_uri = check_tracking_uri() if cfg.run.mlflow else None
    job = prepare(cfg, episodes)
    defaults = PolicyTrainConfig("").recipe  # a run from before an option existed trained so
    return run_training(
        PolicyTrainer,
        cfg,
        job,
        run_name=cfg.run_name,
        resume=[("model", job.meta["model"], None), ("recipe", cfg.recipe, defaults)],
        mlflow_uri=mlflow_uri,
        started=t0,
        callbacks=callbacks,
    )
