"""`flywheel eval-policy CHECKPOINT`: policies rolled out in the simulator, scored on paired seeds.

* **Any policy** with `reset()` and `act(observation) -> action` (the `Policy` protocol) plugs
  in. Where it comes from is a **source**: `controller:<name>` for the scripted controllers
  (expert, hesitant, noisy, failing), or a checkpoint folder (or a run folder: its latest
  checkpoint), loaded by the loader registered
  for its kind (`register_loader("policy")` here; a later model registers its own kind without
  touching this module). A checkpoint of a kind nobody registered (an estimator) is refused
  in one line.
* **The simulator settings** (task, image size, fps, action mode) come from the checkpoint's
  config, so a policy is rolled out in the conditions it was trained for; every arm of one
  evaluation must agree on them (controllers take the checkpoints'), and a checkpoint whose
  state or action dimensions or cameras the simulator does not have is refused up front.
* **Seeds** `--seed` .. `--seed + N - 1` for every arm: episode k of each arm starts from the
  same cube pose, so arms are compared seed by seed (paired). An episode succeeds if
  `info["success"]` is true at any step before the time limit truncates it (lerobot-eval's
  rule); its steps to success are the environment steps taken until then.
* **Ray tasks**: each arm's seeds are split into groups, one Ray task per group (1 CPU, one
  torch thread), all arms at once; results are gathered by seed. `--one-process` runs the
  same episodes in this process, without Ray (the benchmark's baseline, and for debugging).
* **Report**: per arm the success rate with its Wilson 95 % interval and the mean steps to
  success; with `--compare`, each further arm's paired difference from the first with an exact
  McNemar p-value. `--report PATH` writes it as JSON (atomically); MLflow gets the numbers, the
  report and the first `--videos` episodes of every arm as mp4 files (front | wrist camera).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pipelines.dataset import DatasetError
from pipelines.evaluation.stats import mcnemar_exact, paired_counts, wilson_interval
from pipelines.runtime.training import checkpoint_kind, latest_checkpoint

CONTROLLER_PREFIX = "controller:"
PROMPT_CHOICES = ("positive", "negative", "none")


class Policy(Protocol):
    """What eval-policy drives: reset before each episode, one action per observation."""

    def reset(self) -> None: ...

    def act(self, observation: dict) -> np.ndarray: ...


@dataclass(frozen=True)
class EnvSettings:
    task: str = "reach_grasp"
    image_size: int = 128
    fps: int = 10
    action_mode: str = "joint"

    def make(self):
        from pipelines.simulator import SO101Env

        return SO101Env(
            self.task, fps=self.fps, image_size=self.image_size, action_mode=self.action_mode
        )


@dataclass
class ArmOptions:
    """What the user asked of one arm besides its source."""

    prompt: str = "positive"
    cfg_scale: float = 1.0
    n_action_steps: int | None = None  # default: the checkpoint's
    name: str | None = None


class LoadedPolicy(Protocol):
    """A policy source loaded in the driver; picklable, so it travels to Ray tasks."""

    name: str
    source: str  # what the user gave: a checkpoint folder or controller:<name>
    env: EnvSettings | None  # None: runs in whatever settings the other arms need

    def check(self, env) -> None: ...

    def make(self, env) -> Policy: ...


LOADERS: dict[str, Callable[[Path, ArmOptions], LoadedPolicy]] = {}


def register_loader(kind: str):
    """Register `loader(path, options) -> LoadedPolicy` for checkpoints of `kind`."""

    def add(fn):
        LOADERS[kind] = fn
        return fn

    return add


# --------------------------------------------------------------------------- controllers


class ControllerPolicy:
    """A scripted controller (privileged: it reads the simulator's state) as a Policy."""

    def __init__(self, name: str, env):
        from pipelines.simulator.controllers import make_controller

        self.env = env
        self.controller = make_controller(name, env)

    def reset(self) -> None:
        # seeded from the episode: the env was just reset with the episode's seed
        self.controller.reset(int(self.env.np_random.integers(2**31)))

    def act(self, observation: dict) -> np.ndarray:
        return np.asarray(self.controller(observation, {}), dtype=np.float32)


@dataclass
class LoadedController:
    controller: str
    name: str
    source: str
    env: EnvSettings | None = None

    def check(self, env) -> None:
        return None

    def make(self, env) -> Policy:
        return ControllerPolicy(self.controller, env)


def load_controller(source: str, options: ArmOptions) -> LoadedController:
    from pipelines.simulator.controllers import CONTROLLERS

    name = source[len(CONTROLLER_PREFIX) :]
    if name not in CONTROLLERS:
        raise DatasetError(
            f"{source}: no such controller (one of {', '.join(sorted(CONTROLLERS))})"
        )
    return LoadedController(name, options.name or source, source)


# --------------------------------------------------------------------------- policy checkpoints


def resolve_prompt(prompt: str, meta: dict) -> tuple[str, str]:
    """(prompt text, bare task text) for --prompt positive|negative|none|"<text>".

    positive / negative name the top / bottom label of the checkpoint's labeling (binary:
    "Advantage: positive" / "negative"; n_slices: the highest / lowest slice) of the simulated
    task's text; other text must be one of the checkpoint's prompts.
    """
    from pipelines.labeling.advantage import base_task
    from pipelines.policy.data import label_of
    from pipelines.synth import TASK_TEXT

    tasks = list(meta["tasks"].values())
    bases = list(dict.fromkeys(base_task(t) for t in tasks))
    sim_text = TASK_TEXT.get(meta["env"]["task"])
    bare = sim_text if sim_text in bases else bases[0]
    if prompt == "none":
        return bare, bare
    labels = [label_of(t) for t in tasks if base_task(t) == bare and label_of(t) is not None]
    if prompt in ("positive", "negative"):
        if not labels:
            raise DatasetError(
                f"--prompt {prompt}: the policy's tasks carry no advantage labels "
                f"({tasks[0]!r}); use --prompt none"
            )
        if "positive" in labels or "negative" in labels:
            label = prompt
        else:
            slices = sorted(int(x) for x in labels)
            label = str(slices[-1] if prompt == "positive" else slices[0])
        return f"{bare}, Advantage: {label}", bare
    known = list(dict.fromkeys([*tasks, *bases]))
    if prompt not in known:
        shown = "; ".join(repr(t) for t in known[:6])
        raise DatasetError(
            f"--prompt {prompt!r} matches no task of the policy (positive, negative, none or "
            f"one of: {shown})"
        )
    return prompt, base_task(prompt)


@dataclass
class LoadedChunkPolicy:
    """A `policy` checkpoint: config, weights and the prompt to run it with."""

    name: str
    source: str
    env: EnvSettings
    model_config: dict
    state: dict
    prompt: str
    bare_prompt: str
    cfg_scale: float
    n_action_steps: int

    def check(self, env) -> None:
        """Refuse a policy whose inputs or outputs the simulator does not have."""
        c = self.model_config
        obs = env.observation_space
        state_shape = obs["observation.state"].shape
        action_shape = env.action_space.shape
        if tuple(state_shape) != (c["state_dim"],):
            raise DatasetError(
                f"{self.name}: the policy's observation.state has {c['state_dim']} dimensions, "
                f"the simulator's {state_shape[0]}"
            )
        if tuple(action_shape) != (c["action_dim"],):
            raise DatasetError(
                f"{self.name}: the policy's action has {c['action_dim']} dimensions, the "
                f"simulator's ({self.env.action_mode} mode) {action_shape[0]}"
            )
        missing = [k for k in c["cameras"] if k not in obs.spaces]
        if missing:
            raise DatasetError(
                f"{self.name}: camera {missing[0]!r} is not one of the simulator's "
                f"({', '.join(k for k in obs.spaces if k.startswith('observation.images'))})"
            )

    def make(self, env) -> Policy:
        import torch

        from pipelines.policy.model import ChunkPolicy, PolicyConfig
        from pipelines.policy.runner import ChunkPolicyRunner

        torch.set_num_threads(1)
        model = ChunkPolicy(PolicyConfig(**self.model_config))
        model.load_state_dict(self.state)
        return ChunkPolicyRunner(
            model, self.prompt, self.bare_prompt, self.cfg_scale, self.n_action_steps
        )


@register_loader("policy")
def load_chunk_policy(path: Path, options: ArmOptions) -> LoadedChunkPolicy:
    from pipelines.runtime.training import load_state, read_meta

    meta = read_meta(path, "policy")
    try:
        env = EnvSettings(**meta["env"])
        prompt, bare = resolve_prompt(options.prompt, meta)
        model_config = meta["model"]
        n_steps = options.n_action_steps or int(meta.get("n_action_steps", 5))
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{path}/policy.json: incomplete policy config ({e})") from None
    if not 1 <= n_steps <= model_config["chunk_size"]:
        raise DatasetError(
            f"--n-action-steps {n_steps}: between 1 and the policy's chunk size "
            f"{model_config['chunk_size']}"
        )
    if options.cfg_scale != 1.0 and prompt == bare:
        raise DatasetError(
            f"--cfg-scale {options.cfg_scale:g}: guidance needs a labeled prompt "
            "(positive, negative or a labeled text), not the bare task"
        )
    name = options.name or _arm_name(path, options)
    state = load_state(path)["model"]
    return LoadedChunkPolicy(
        name, str(path), env, model_config, state, prompt, bare, options.cfg_scale, n_steps
    )


def _arm_name(path: Path, options: ArmOptions) -> str:
    run = path.parent.name if path.name.startswith("checkpoint_") else path.name
    name = f"{run}:{options.prompt}"
    return name + (f"@cfg{options.cfg_scale:g}" if options.cfg_scale != 1.0 else "")


def load_source(source: str, options: ArmOptions) -> LoadedPolicy:
    """A controller or a checkpoint of a registered kind; one-line DatasetErrors otherwise."""
    if source.startswith(CONTROLLER_PREFIX):
        return load_controller(source, options)
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{source}: no such checkpoint (or controller:<name>)")
    kind = checkpoint_kind(path)
    if kind is None:  # a run folder: its latest checkpoint
        path, kind = latest_in_run(path)
    if kind is None:
        raise DatasetError(
            f"{source}: not a checkpoint folder (no state.pt and <kind>.json) nor a run folder "
            "holding checkpoint_* folders"
        )
    if kind not in LOADERS:
        raise DatasetError(
            f"{source}: {_a(kind)} checkpoint; eval-policy evaluates policies "
            f"(checkpoint kinds: {', '.join(sorted(LOADERS))}; or controller:<name>)"
        )
    return LOADERS[kind](path, options)


def latest_in_run(run_dir: Path) -> tuple[Path, str | None]:
    """The checkpoint of a run folder with the most steps, and its kind (None: no checkpoint)."""
    kinds = {checkpoint_kind(p) for p in run_dir.glob("checkpoint_*") if p.is_dir()} - {None}
    if len(kinds) != 1:
        return run_dir, None
    kind = kinds.pop()
    return latest_checkpoint(run_dir, kind), kind


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


# --------------------------------------------------------------------------- episodes


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int  # environment steps taken
    steps_to_success: int | None
    video: bytes | None = None


def run_episode(env, policy: Policy, seed: int, record: bool = False) -> EpisodeResult:
    """One episode; success if info["success"] at any step before truncation."""
    obs, info = env.reset(seed=seed)
    policy.reset()
    frames = [_frame(obs)] if record else None
    steps, success = 0, bool(info.get("success"))
    while not success:
        obs, _reward, terminated, truncated, info = env.step(policy.act(obs))
        steps += 1
        if record:
            frames.append(_frame(obs))
        success = bool(info.get("success"))
        if terminated or truncated:
            break
    video = _encode(frames, env.unwrapped.fps) if record else None
    return EpisodeResult(seed, success, steps, steps if success else None, video)


def _frame(obs: dict) -> np.ndarray:
    cams = [obs[k] for k in sorted(obs) if k.startswith("observation.images.")]
    return np.concatenate(cams, axis=1)


def _encode(frames: list[np.ndarray], fps: float) -> bytes:
    from pipelines.dataset import VideoWriter

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "episode.mp4"
        h, w = frames[0].shape[:2]
        with VideoWriter(path, fps, w, h) as writer:
            for f in frames:
                writer.write(f)
        return path.read_bytes()


def run_group(
    loaded: LoadedPolicy, env_settings: EnvSettings, seeds: list[int], record_below: int
) -> list[EpisodeResult]:
    """Ray task body: some of one arm's seeds; episodes of seeds < `record_below` are filmed."""
    env = env_settings.make()
    policy = loaded.make(env)
    return [run_episode(env, policy, s, record=s < record_below) for s in seeds]


# --------------------------------------------------------------------------- the evaluation


@dataclass
class EvalConfig:
    checkpoint: str
    episodes: int = 100
    seed: int = 0
    prompt: str = "positive"
    cfg_scale: float = 1.0
    n_action_steps: int | None = None
    compare: list[str] = field(default_factory=list)
    report: str | None = None
    videos: int = 2
    one_process: bool = False
    groups_per_cpu: int = 2
    ray_address: str | None = None
    mlflow: bool = True
    name: str | None = None


def parse_arm(spec: str) -> tuple[str, ArmOptions]:
    """'SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X]' -> (source, options)."""
    source, *parts = spec.split("#")
    options = ArmOptions()
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError
            if key == "prompt":
                options.prompt = value
            elif key == "cfg":
                options.cfg_scale = float(value)
            elif key == "steps":
                options.n_action_steps = int(value)
            elif key == "name":
                options.name = value
            else:
                raise ValueError
        except ValueError:
            raise DatasetError(
                f"--compare {spec!r}: {part!r} is not prompt=P, cfg=B, steps=N or name=X"
            ) from None
    _check_cfg(options.cfg_scale, spec)
    return source, options


def _check_cfg(value: float, where: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise DatasetError(f"{where}: cfg scale {value} must be a positive number")


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


def _validate(cfg: EvalConfig) -> list[LoadedPolicy]:
    if cfg.episodes < 1:
        raise DatasetError(f"--episodes {cfg.episodes}: at least 1")
    if cfg.seed < 0:
        raise DatasetError(f"--seed {cfg.seed}: at least 0")
    if cfg.videos < 0:
        raise DatasetError(f"--videos {cfg.videos}: at least 0")
    if cfg.n_action_steps is not None and cfg.n_action_steps < 1:
        raise DatasetError(f"--n-action-steps {cfg.n_action_steps}: at least 1")
    _check_cfg(cfg.cfg_scale, "--cfg-scale")
    first = ArmOptions(cfg.prompt, cfg.cfg_scale, cfg.n_action_steps, cfg.name)
    arms = [(cfg.checkpoint, first)] + [parse_arm(s) for s in cfg.compare]
    loaded = [load_source(src, opts) for src, opts in arms]
    names = [p.name for p in loaded]
    for i, n in enumerate(names):  # names identify arms in the report: make them unique
        if names.count(n) > 1:
            loaded[i].name = f"{n} ({i + 1})"
    return loaded


def settings_for(loaded: list[LoadedPolicy]) -> EnvSettings:
    """The one simulator setting every arm runs in; a DatasetError if checkpoints disagree."""
    wanted = {p.name: p.env for p in loaded if p.env is not None}
    distinct = set(wanted.values())
    if len(distinct) > 1:
        shown = "; ".join(f"{n}: {asdict(e)}" for n, e in wanted.items())
        raise DatasetError(f"the arms were trained for different simulator settings ({shown})")
    return distinct.pop() if distinct else EnvSettings()


def run(cfg: EvalConfig, out=print) -> EvalResult:
    t0 = time.time()
    from pipelines.runtime.tracking import check_tracking_uri

    mlflow_uri = check_tracking_uri() if cfg.mlflow else None
    loaded = _validate(cfg)
    env_settings = settings_for(loaded)
    probe = env_settings.make()
    for p in loaded:
        p.check(probe)
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    record = cfg.seed + min(cfg.videos, cfg.episodes) if cfg.mlflow else cfg.seed
    if cfg.one_process:
        results = [run_group(p, env_settings, seeds, record) for p in loaded]
    else:
        results = _run_on_ray(loaded, env_settings, seeds, record, cfg)
    arms = [
        ArmResult(p.name, p.source, getattr(p, "prompt", None), getattr(p, "cfg_scale", 1.0), r)
        for p, r in zip(loaded, results, strict=True)
    ]
    comparisons = [compare(arms[0], a) for a in arms[1:]]
    report = {
        "seeds": [seeds[0], seeds[-1]],
        "episodes": cfg.episodes,
        "env": asdict(env_settings),
        "mode": "one process" if cfg.one_process else "ray",
        "arms": [a.summary() for a in arms],
        "comparisons": comparisons,
    }
    seconds = time.time() - t0
    report["seconds"] = seconds
    if cfg.report:
        from pipelines.dataset import atomic_write_json

        Path(cfg.report).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg.report, report)
    result = EvalResult(arms, comparisons, env_settings, seconds, report)
    if mlflow_uri:
        result.mlflow_run = _log_mlflow(mlflow_uri, cfg, result)
    return result


def _run_on_ray(loaded, env_settings, seeds, record, cfg: EvalConfig):
    import ray

    from pipelines.runtime.cluster import cluster_cpus, connect

    connect(cfg.ray_address)
    n_groups = max(1, min(len(seeds), cfg.groups_per_cpu * cluster_cpus() // len(loaded) or 1))
    groups = [g.tolist() for g in np.array_split(np.array(seeds), n_groups) if len(g)]
    task = ray.remote(num_cpus=1)(run_group)
    refs = []
    for p in loaded:
        shared = ray.put(p)
        refs.append([task.remote(shared, env_settings, g, record) for g in groups])
    return [[ep for part in ray.get(arm_refs) for ep in part] for arm_refs in refs]


def _log_mlflow(uri: str, cfg: EvalConfig, result: EvalResult) -> str:
    import json

    import mlflow

    from pipelines.runtime.tracking import allow_store

    allow_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("flywheel-eval-policy")
    with mlflow.start_run(run_name=cfg.name or result.arms[0].name) as active:
        mlflow.log_params(
            {
                "checkpoint": cfg.checkpoint,
                "episodes": cfg.episodes,
                "seed": cfg.seed,
                "prompt": cfg.prompt,
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
