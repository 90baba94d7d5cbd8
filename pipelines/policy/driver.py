"""`flywheel train-policy DATASET`: Stage 3, the advantage-conditioned policy on Ray Train (DDP).

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
worker samples `--batch-size` frames from its shard (uniformly, from the top-label frames only
with `--drop-negative`, or each data type an equal share with `--balance-data-types`); DDP
averages the gradients.

Checkpoints (kind "policy": model, optimizer, critics, step, config, normalization stats,
prompts and the simulator settings that eval-policy uses) every `--checkpoint-every` steps in
`--storage/--name`; running the same command again resumes from the last one (Ray Train V2:
same name and storage; a run name that holds another model or recipe is refused with the
differences listed), and a worker that dies is replaced and the group resumes from the last
checkpoint (`--max-failures`). Rank 0 logs parameters, losses, weight statistics, the held-out
L1 and a PNG of predicted against recorded actions on a held-out episode to MLflow.

CPU time: each worker measures its own `time.process_time()` (decoding included); the sum over
workers, accumulated across resumed attempts, is the checkpoint's `cpu_seconds`.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, parquet_column_names, read_columns
from pipelines.policy.data import (
    DATA_TYPES,
    DEFAULT_DATA_TYPE_WEIGHTS,
    PromptTable,
    label_of,
    normalization_stats,
    parse_data_type_weights,
    vectors,
)
from pipelines.policy.model import ACTION_FRAMES, PolicyConfig
from pipelines.policy.weighting import WEIGHTINGS
from pipelines.runtime.training import (
    check_resume,
    fit,
    learning_rate,
    meta_name,
    read_meta,
    report_if_finished,
    resume_in_worker,
    write_checkpoint,
)
from pipelines.selection.propensity import LOG_NAME, dataset_log, validate_propensities

KIND = "policy"
CHECKPOINT_META = meta_name(KIND)
CONDITIONINGS = ("prompt", "none")
SIM_TASKS = ("reach_grasp", "pick_lift")
CURRICULA = ("none", "propensity")
SELECTION_COLUMNS = ("action_propensity", "candidate_actions", "selected_candidate")


@dataclass
class TrainPolicyConfig:
    dataset: str
    data_dir: str = "data"
    conditioning: str = "prompt"
    indicator_dropout: float = 0.3
    drop_negative: bool = False
    weighting: str = "none"
    advantage_column: str = "absolute_advantage"
    temperature: float = 0.5
    max_weight: float = 20.0
    expectile: float = 0.7
    discount: float = 0.99
    target_tau: float = 0.005
    data_type_weights: str = DEFAULT_DATA_TYPE_WEIGHTS
    balance_data_types: bool = False
    importance_weights: bool = False  # seed 000: propensity-weighted (see weighting.py)
    max_importance_weight: float = 10.0
    self_normalize: bool = False
    candidate_scale: float = 5.0
    curriculum: str = "none"  # none | propensity
    curriculum_min_propensity: float = 0.5
    curriculum_fraction: float = 0.5
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: int | None = None
    steps: int = 3000  # with the defaults below: ~11 CPU-minutes (2 workers, 2 cores)
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 64
    encoder: str = "spatial_softmax"
    chunk_size: int = 10
    n_action_steps: int = 5
    action_frame: str = "relative"
    augment: bool = True
    checkpoint_every: int = 500
    holdout: float = 0.05
    holdout_episodes: list[int] | None = None
    seed: int = 0
    name: str | None = None
    storage: str = "flywheel-runs"
    max_failures: int = 2
    sim_task: str | None = None  # default: from the dataset's task text
    ray_address: str | None = None
    mlflow: bool = True
    episodes: list[int] | None = field(default=None, repr=False)  # default: all

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        arm = "bc" if self.conditioning == "none" else "awbc"
        if self.drop_negative:
            arm = "filtered-bc"
        return f"policy-{arm}" + (f"-{self.weighting}" if self.weighting != "none" else "")

    @property
    def recipe(self) -> dict:
        """What a run trains (must be the same to resume): everything but budget and infra."""
        keep = [
            "data_dir",
            "conditioning",
            "indicator_dropout",
            "drop_negative",
            "weighting",
            "advantage_column",
            "temperature",
            "max_weight",
            "expectile",
            "discount",
            "target_tau",
            "data_type_weights",
            "balance_data_types",
            "importance_weights",
            "max_importance_weight",
            "self_normalize",
            "candidate_scale",
            "curriculum",
            "curriculum_min_propensity",
            "curriculum_fraction",
            "batch_size",
            "lr",
            "augment",
            "seed",
        ]
        return {k: getattr(self, k) for k in keep}


# --------------------------------------------------------------------------- checks (driver)


def _check_numbers(cfg: TrainPolicyConfig) -> None:
    for name, value, low in (
        ("--workers", cfg.workers, 1),
        ("--steps", cfg.steps, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--checkpoint-every", cfg.checkpoint_every, 1),
        ("--chunk-size", cfg.chunk_size, 1),
        ("--n-action-steps", cfg.n_action_steps, 1),
        ("--gpus-per-worker", cfg.gpus_per_worker, 0),
        ("--cpus-per-worker", cfg.cpus_per_worker or 1, 1),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if cfg.n_action_steps > cfg.chunk_size:
        raise DatasetError(
            f"--n-action-steps {cfg.n_action_steps}: at most --chunk-size {cfg.chunk_size}"
        )
    for name, value in (
        ("--lr", cfg.lr),
        ("--temperature", cfg.temperature),
        ("--max-weight", cfg.max_weight),
        ("--max-importance-weight", cfg.max_importance_weight),
        ("--candidate-scale", cfg.candidate_scale),
    ):
        if not (math.isfinite(value) and value > 0):
            raise DatasetError(f"{name} {value}: must be a positive number")
    for name, value in (
        ("--indicator-dropout", cfg.indicator_dropout),
        ("--discount", cfg.discount),
        ("--target-tau", cfg.target_tau),
        ("--curriculum-min-propensity", cfg.curriculum_min_propensity),
        ("--curriculum-fraction", cfg.curriculum_fraction),
    ):
        if not 0 <= value <= 1:
            raise DatasetError(f"{name} {value}: must be between 0 and 1")
    if not 0 < cfg.expectile < 1:
        raise DatasetError(f"--expectile {cfg.expectile}: strictly between 0 and 1")
    if not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")
    if not 0 <= cfg.holdout < 1:
        raise DatasetError(f"--holdout {cfg.holdout}: a share of the episodes in [0, 1)")
    if cfg.max_failures < -1:
        raise DatasetError(f"--max-failures {cfg.max_failures}: -1 (no limit) or more")
    for name, value, choices in (
        ("--conditioning", cfg.conditioning, CONDITIONINGS),
        ("--weighting", cfg.weighting, WEIGHTINGS),
        ("--action-frame", cfg.action_frame, ACTION_FRAMES),
        ("--curriculum", cfg.curriculum, CURRICULA),
    ):
        if value not in choices:
            raise DatasetError(f"{name} {value!r}: one of {', '.join(choices)}")
    if cfg.sim_task is not None and cfg.sim_task not in SIM_TASKS:
        raise DatasetError(f"--sim-task {cfg.sim_task!r}: one of {', '.join(SIM_TASKS)}")
    if not cfg.data_dir or "/" in cfg.data_dir or cfg.data_dir in (".", ".."):
        raise DatasetError(f"--data-dir {cfg.data_dir!r}: a folder name inside the dataset")
    try:
        parse_data_type_weights(cfg.data_type_weights)
    except ValueError as e:
        raise DatasetError(f"--data-type-weights {cfg.data_type_weights!r}: {e}") from None


def split(episodes: list[int], cfg: TrainPolicyConfig) -> tuple[list[int], list[int]]:
    """(training, held-out) episodes: --holdout-episodes if given, else a --holdout share."""
    from pipelines.runtime.training import split_episodes

    if cfg.holdout_episodes is not None:
        unknown = sorted(set(cfg.holdout_episodes) - set(episodes))
        if unknown:
            raise DatasetError(f"--holdout-episodes: episode(s) {unknown} not in the dataset")
        held = set(cfg.holdout_episodes)
        return [e for e in episodes if e not in held], sorted(held)
    return split_episodes(episodes, cfg.holdout, cfg.seed)


def _float_column(table, name: str, rel: str) -> np.ndarray:
    import pyarrow as pa

    typ = table.schema.field(name).type
    while pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ):
        typ = typ.value_type
    if not pa.types.is_floating(typ):
        raise DatasetError(f"{rel}: column {name!r} is {typ}, not a float column")
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        if len(col.flatten()) != table.num_rows:
            raise DatasetError(f"{rel}: column {name!r} is not one value per frame")
        col = col.flatten()
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _where_nan(values: np.ndarray, episodes: np.ndarray, frames: np.ndarray) -> str | None:
    bad = np.flatnonzero(~np.isfinite(values))
    if not len(bad):
        return None
    i = bad[0]
    return f"episode {int(episodes[i])} frame {int(frames[i])}"


@dataclass
class DatasetScan:
    cameras: list[str]
    state_dim: int
    action_dim: int
    stats: dict
    prompts: PromptTable
    frames: int
    top_frames: int
    data_types: dict[str, int]


def scan_dataset(
    ds: LeRobotDataset, episodes: list[int], cfg: TrainPolicyConfig, action_frame: str
) -> DatasetScan:
    """Validate every training episode's columns (no pixels); the normalization statistics.

    One-line DatasetErrors name the file (and episode and frame) of what the recipe cannot use.
    """
    cameras = ds.camera_keys
    root = ds.root
    if not cameras:
        raise DatasetError(f"{root}/meta/info.json: no camera features")
    for key in ("observation.state", "action"):
        if key not in ds.features:
            raise DatasetError(f"{root}/meta/info.json: no {key!r} feature")
    if not ds.tasks:
        raise DatasetError(f"{root}/meta: no tasks (tasks.jsonl / tasks.parquet)")
    prompts = PromptTable.from_tasks(ds.tasks)
    labeled = [t for t in ds.tasks.values() if label_of(t) is not None]
    needs_labels = cfg.conditioning == "prompt" or cfg.drop_negative
    if needs_labels and not labeled:
        flag = "--conditioning prompt" if cfg.conditioning == "prompt" else "--drop-negative"
        raise DatasetError(
            f"{root}/meta: {flag} needs advantage labels, but no task text carries one "
            f"(e.g. {next(iter(ds.tasks.values()))!r}); label the dataset first "
            "(flywheel label), or train plain BC with --conditioning none"
        )
    columns = ["observation.state", "action", "task_index", "episode_index", "frame_index"]
    optional = ["data_type"]
    if cfg.weighting == "awr":
        columns.append(cfg.advantage_column)
    if cfg.weighting == "iql":
        columns += ["next.reward", "next.done"]
    selection = cfg.importance_weights or cfg.curriculum == "propensity"
    if selection:
        columns += [*SELECTION_COLUMNS, "approval_status"]
        log = None
        if (root / LOG_NAME).exists():
            log = dataset_log(root)
    files: dict[Path, list[int]] = {}
    for e in episodes:
        files.setdefault(ds.data_file(e, cfg.data_dir), []).append(e)
    states, actions = [], []
    counts = dict.fromkeys(DATA_TYPES, 0)
    frames = top = 0
    wanted = set(episodes)
    for path, eps in files.items():
        rel = ds.relative(path)
        if not path.exists():
            raise DatasetError(f"{rel}: missing (episode {eps[0]})")
        names = parquet_column_names(path)
        for col in columns:
            if col not in names and col in (*SELECTION_COLUMNS, "approval_status"):
                flag = "--importance-weights" if cfg.importance_weights else "--curriculum"
                raise DatasetError(
                    f"{rel}: no column {col!r}: {flag} needs a dataset collected with logged "
                    "propensities (flywheel collect)"
                )
            if col not in names:
                what = "advantage column" if col == cfg.advantage_column else "column"
                hint = (
                    f"; float columns there: {', '.join(_float_names(path)) or 'none'}"
                    if col == cfg.advantage_column
                    else ""
                )
                raise DatasetError(f"{rel}: no {what} {col!r}{hint}")
        table = read_columns(path, columns + [c for c in optional if c in names])
        ep_col = table.column("episode_index").to_numpy()
        fr_col = table.column("frame_index").to_numpy()
        if cfg.weighting == "awr":
            values = _float_column(table, cfg.advantage_column, rel)
            where = _where_nan(values, ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite {cfg.advantage_column!r} at {where}")
        if cfg.weighting == "iql":
            values = _float_column(table, "next.reward", rel)
            where = _where_nan(values, ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite 'next.reward' at {where}")
        if selection:
            validate_propensities(
                rel,
                _float_column(table, "action_propensity", rel),
                fr_col,
                ep_col,
                _candidate_count(table, rel),
                table.column("selected_candidate").to_numpy(),
                log,
            )
        ti = table.column("task_index").to_numpy()
        unknown = sorted(set(ti.tolist()) - set(ds.tasks))
        if unknown:
            raise DatasetError(f"{rel}: task_index {unknown[0]} is not in the dataset's tasks")
        if "data_type" in table.column_names:
            for value, n in zip(
                *np.unique(np.asarray(table.column("data_type").to_pylist(), dtype=object), True),
                strict=True,
            ):
                if value not in counts:
                    raise DatasetError(
                        f"{rel}: data_type {value!r} is not one of {', '.join(DATA_TYPES)}"
                    )
                counts[value] += int(n)
        else:
            counts["auto"] += table.num_rows
        state = vectors(table, "observation.state")
        action = vectors(table, "action")
        for name, values in (("observation.state", state), ("action", action)):
            where = _where_nan(values.sum(1), ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite {name!r} at {where}")
        for e in sorted(set(ep_col.tolist()) & wanted):
            mask = ep_col == e
            states.append(state[mask])
            actions.append(action[mask])
        keep = np.isin(ep_col, list(wanted))
        frames += int(keep.sum())
        top += int((prompts.top[ti] & keep).sum())
    if cfg.drop_negative and top == 0:
        raise DatasetError(f"{root}: --drop-negative keeps no frame (no top-label frames)")
    state_dim, action_dim = states[0].shape[1], actions[0].shape[1]
    stats = normalization_stats(states, actions, cfg.chunk_size, action_frame)
    return DatasetScan(cameras, state_dim, action_dim, stats, prompts, frames, top, counts)


def _candidate_count(table, rel: str) -> int:
    """n of an n x action_dim `candidate_actions` column."""
    import pyarrow as pa

    typ = table.schema.field("candidate_actions").type
    if not (pa.types.is_fixed_size_list(typ) and pa.types.is_fixed_size_list(typ.value_type)):
        raise DatasetError(f"{rel}: column 'candidate_actions' is {typ}, not n x action_dim")
    return typ.list_size


def _float_names(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return [f.name for f in pq.read_schema(path) if pa.types.is_floating(f.type)]


def infer_sim_task(tasks: dict[int, str]) -> str:
    """The simulated task a dataset's task text names (reach_grasp unless pick_lift's)."""
    from pipelines.labeling.advantage import base_task
    from pipelines.synth import TASK_TEXT

    bare = {base_task(t) for t in tasks.values()}
    for name, text in TASK_TEXT.items():
        if text in bare:
            return name
    return "reach_grasp"


def env_settings(ds: LeRobotDataset, cfg: TrainPolicyConfig, action_dim: int) -> dict:
    """The simulator settings eval-policy rolls this policy out in (from the dataset)."""
    shape = ds.features[ds.camera_keys[0]].get("shape") or [128, 128, 3]
    return {
        "task": cfg.sim_task or infer_sim_task(ds.tasks),
        "image_size": int(shape[0]),
        "fps": int(round(ds.fps)),
        "action_mode": "ee_delta" if action_dim == 4 else "joint",
    }


# --------------------------------------------------------------------------- the worker loop


def action_figure(recorded: np.ndarray, predicted: np.ndarray, episode: int, step: int):
    """Recorded actions against the first action of each predicted chunk, per dimension."""
    import matplotlib

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
    import torch

    from pipelines.policy.data import FrameStore, chunk_indices, delta_timestamps
    from pipelines.policy.model import tokenize
    from pipelines.policy.weighting import masked_l1

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


def train_loop(config: dict) -> None:
    """Ray Train worker: DDP training on this worker's episode shard (module docstring)."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    from pipelines.policy.data import (
        FrameStore,
        load_episode,
        sampling_probabilities,
    )
    from pipelines.policy.learner import Critic, Learner, LearnerConfig, TrainModule, make_batch
    from pipelines.policy.model import ChunkPolicy, tokenize

    cpu0 = time.process_time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    device = get_device()
    mcfg = PolicyConfig(**config["model"])
    lcfg = LearnerConfig(**config["learner"])
    ds = LeRobotDataset(config["dataset"])
    data_dir, adv = config["data_dir"], config["advantage"]
    shard = config["train_episodes"][rank::world]
    t0 = time.time()
    selection = config.get("selection", False)
    store = FrameStore.concat(
        [
            load_episode(ds, e, mcfg.cameras, mcfg.image_size, data_dir, adv, selection)
            for e in shard
        ],
        shard,
    )
    decode_s = time.time() - t0
    prompts = PromptTable.from_dict(config["prompts"])
    tokens = tokenize(prompts.texts, mcfg.prompt_vocab)
    weights = parse_data_type_weights(config["data_type_weights"])
    type_weights = np.array([weights[t] for t in DATA_TYPES] + [1.0], dtype=np.float32)
    pool = np.arange(len(store))
    if config["drop_negative"]:
        pool = np.flatnonzero(prompts.top[store.task_index])
    probs = sampling_probabilities(store.data_type[pool], config["balance_data_types"])
    # --curriculum propensity: the first steps draw only high-propensity (safe) actions
    early_pool, early_probs, early_steps = pool, probs, 0
    if config.get("curriculum") == "propensity":
        early_pool = pool[store.propensity[pool] >= config["curriculum_min_propensity"]]
        if len(early_pool):
            early_probs = sampling_probabilities(
                store.data_type[early_pool], config["balance_data_types"]
            )
            early_steps = int(round(config["curriculum_fraction"] * config["steps"]))

    policy = ChunkPolicy(mcfg)
    policy.set_normalization(config["stats"])
    n_features = len(mcfg.cameras) * mcfg.feature_dim + mcfg.state_dim
    critic = Critic(n_features, mcfg.action_dim) if lcfg.weighting == "iql" else None
    plain = TrainModule(policy, critic)
    module = prepare_model(plain)  # DDP across workers, on this worker's device
    plain = module.module if hasattr(module, "module") else module
    learner = Learner(module, plain, lcfg, config["lr"])
    steps = config["steps"]
    start, cpu_before = 0, 0.0
    checkpoint, state = resume_in_worker(device)
    if state:
        learner.load_state_dict(state)
        start = int(state["step"])
        cpu_before = float(state.get("cpu_seconds", 0.0))

    if report_if_finished(start, steps, checkpoint, rank):
        return

    mlflow = None
    if config["mlflow_uri"] and rank == 0:
        from ray.air.integrations.mlflow import setup_mlflow

        from pipelines.runtime.tracking import allow_store

        allow_store(config["mlflow_uri"])
        mlflow = setup_mlflow(
            config["params"],
            tracking_uri=config["mlflow_uri"],
            experiment_name="flywheel-train-policy",
            run_name=config["run_name"],
            create_experiment_if_not_exists=True,
            rank_zero_only=True,
        )

    def total_cpu() -> float:
        mine = torch.tensor([time.process_time() - cpu0], dtype=torch.float64)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(mine)
        return cpu_before + float(mine[0])

    rng = np.random.default_rng([config["seed"], rank, start])
    iql = lcfg.weighting == "iql"
    sums: dict[str, float] = {}
    n_sum, t_last, samples = 0, time.time(), 0
    for step in range(start, steps):
        if step < early_steps:
            frames = rng.choice(early_pool, size=config["batch_size"], p=early_probs)
        else:
            frames = rng.choice(pool, size=config["batch_size"], p=probs)
        batch = make_batch(
            store, frames, prompts, tokens, lcfg, mcfg.chunk_size, type_weights, rng, iql
        )
        lr = learning_rate(step, steps, config["lr"])
        out = learner.step(batch, lr, device)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v
        n_sum += 1
        samples += len(frames)
        done = step + 1
        if done % config["checkpoint_every"] and done != steps:
            continue
        elapsed = time.time() - t_last
        metrics = {k: v / n_sum for k, v in sums.items()}
        metrics.update(
            step=done,
            samples_per_s=samples * world / elapsed,  # all workers together
            resumed_from=start,
            decode_s=decode_s,
            lr=lr,
            cpu_seconds=total_cpu(),
        )
        sums, n_sum, samples, t_last = {}, 0, 0, time.time()
        if rank == 0 and done == steps and config["held_episodes"]:
            held = [
                load_episode(ds, e, mcfg.cameras, mcfg.image_size, data_dir, None)
                for e in config["held_episodes"]
            ]
            l1, recorded, predicted = held_out_eval(
                plain.policy, held, prompts, lcfg.conditioning, lcfg.fps, device
            )
            metrics["heldout_l1"] = l1
            if mlflow is not None:
                fig = action_figure(recorded, predicted, config["held_episodes"][0], done)
                mlflow.log_figure(fig, "predicted_vs_recorded_actions.png")
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=done)
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                state = {
                    **learner.state_dict(),
                    "step": done,
                    "cpu_seconds": metrics["cpu_seconds"],
                }
                meta = {**config["meta"], "step": done, "metrics": metrics}
                write_checkpoint(d, KIND, state, meta)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
    if mlflow is not None:
        mlflow.end_run()


# --------------------------------------------------------------------------- the driver


@dataclass
class TrainPolicyResult:
    checkpoint: str
    step: int
    metrics: dict
    seconds: float


def validate(cfg: TrainPolicyConfig) -> tuple[LeRobotDataset, dict, list[int], list[int]]:
    """Every check before Ray starts: (dataset, checkpoint meta, training, held-out episodes)."""
    _check_numbers(cfg)
    ds = LeRobotDataset(cfg.dataset)
    episodes = cfg.episodes if cfg.episodes is not None else ds.episode_indices
    if not episodes:
        raise DatasetError(f"{ds.root}: no episodes")
    train, held = split(episodes, cfg)
    if not train:
        raise DatasetError(f"{ds.root}: no training episodes left after the held-out split")
    state_shape = ds.features["observation.state"].get("shape", [0])
    action_shape = ds.features.get("action", {}).get("shape", [0])
    action_frame = cfg.action_frame
    if action_frame == "relative" and list(state_shape) != list(action_shape):
        action_frame = "absolute"  # actions are not joint targets of the state's joints
    scan = scan_dataset(ds, train + held, cfg, action_frame)
    for key in scan.cameras:  # fail fast on a codec OpenCV cannot decode
        next(iter(ds.iter_camera_frames(train[0], key, cfg.data_dir)))
    model = PolicyConfig(
        cameras=scan.cameras,
        state_dim=scan.state_dim,
        action_dim=scan.action_dim,
        chunk_size=cfg.chunk_size,
        image_size=cfg.image_size,
        encoder=cfg.encoder,
        action_frame=action_frame,
    )
    prompts = scan.prompts.to_dict()
    meta = {
        "kind": KIND,
        "model": model.to_dict(),
        "recipe": cfg.recipe,
        "normalization": scan.stats,
        "tasks": {str(k): v for k, v in sorted(ds.tasks.items())},
        "prompts": prompts,
        "conditioning": cfg.conditioning,
        "n_action_steps": cfg.n_action_steps,
        "env": env_settings(ds, cfg, scan.action_dim),
        "dataset": str(ds.root.resolve()),
        "train_frames": scan.frames,
        "data_types": scan.data_types,
    }
    return ds, meta, train, held


def run(cfg: TrainPolicyConfig, callbacks: list | None = None) -> TrainPolicyResult:
    """Train (or resume) the policy; `callbacks`: extra Ray Train callbacks (a sweep's)."""
    from pipelines.runtime.tracking import check_tracking_uri

    t0 = time.time()
    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    ds, meta, train, held = validate(cfg)
    run_dir = Path(cfg.storage) / cfg.run_name
    # the run exists: it resumes, so it must be the same model and recipe
    check_resume(run_dir, KIND, meta["model"], cfg.run_name)
    defaults = TrainPolicyConfig("").recipe  # a run from before an option existed trained so
    previous = check_resume(run_dir, KIND, meta["recipe"], cfg.run_name, "recipe", defaults)
    if previous is not None and previous["step"] >= cfg.steps:  # finished: nothing to train
        metrics = {**previous["metrics"], "resumed_from": previous["step"]}
        return TrainPolicyResult(previous["path"], previous["step"], metrics, time.time() - t0)

    from pipelines.runtime.cluster import cluster_cpus, connect

    connect(cfg.ray_address)
    cpus = cfg.cpus_per_worker or max(1, cluster_cpus() // max(cfg.workers, 1))
    params = {
        k: v
        for k, v in asdict(cfg).items()
        if k not in ("episodes", "holdout_episodes", "ray_address", "mlflow")
    }
    loop_config = {
        "dataset": meta["dataset"],
        "data_dir": cfg.data_dir,
        "advantage": cfg.advantage_column if cfg.weighting == "awr" else None,
        "model": meta["model"],
        "learner": {
            "conditioning": cfg.conditioning,
            "indicator_dropout": cfg.indicator_dropout,
            "weighting": cfg.weighting,
            "temperature": cfg.temperature,
            "max_weight": cfg.max_weight,
            "expectile": cfg.expectile,
            "discount": cfg.discount,
            "target_tau": cfg.target_tau,
            "fps": float(ds.fps),
            "augment": cfg.augment,
            "importance_weights": cfg.importance_weights,
            "max_importance_weight": cfg.max_importance_weight,
            "self_normalize": cfg.self_normalize,
            "candidate_scale": cfg.candidate_scale,
        },
        "selection": cfg.importance_weights or cfg.curriculum == "propensity",
        "curriculum": cfg.curriculum,
        "curriculum_min_propensity": cfg.curriculum_min_propensity,
        "curriculum_fraction": cfg.curriculum_fraction,
        "stats": meta["normalization"],
        "prompts": meta["prompts"],
        "data_type_weights": cfg.data_type_weights,
        "drop_negative": cfg.drop_negative,
        "balance_data_types": cfg.balance_data_types,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "checkpoint_every": cfg.checkpoint_every,
        "seed": cfg.seed,
        "threads": cpus,
        "train_episodes": train,
        "held_episodes": held,
        "run_name": cfg.run_name,
        "mlflow_uri": mlflow_uri,
        "params": {**params, "train_episodes": len(train), "held_episodes": len(held)},
        "meta": {**meta, "train_episodes": train, "held_episodes": held},
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
        callbacks=callbacks,
    )
    if result.checkpoint is None:
        raise DatasetError(f"{cfg.storage}/{cfg.run_name}: training ended without a checkpoint")
    final = read_meta(result.checkpoint.path, KIND)
    return TrainPolicyResult(
        result.checkpoint.path,
        final["step"],
        result.metrics or final["metrics"],
        time.time() - t0,
    )
