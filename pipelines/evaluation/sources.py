"""Where an arm's policy comes from: a scripted controller or a checkpoint of a registered kind.

`load_source` turns what the user gave (`controller:<name>`, a checkpoint or a run folder) into
a `LoadedPolicy`: picklable, checked against the simulator, made into a `Policy` (`reset()`,
`act(observation)`) inside each Ray task. Checkpoint kinds register their loader with
`register_loader(kind)`; `policy` checkpoints are registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pipelines.dataset import DatasetError
from pipelines.dataset.units import JointConverter
from pipelines.evaluation.config import CONTROLLER_PREFIX, ArmOptions, EnvSettings
from pipelines.labeling.advantage import base_task
from pipelines.policy.data import label_of
from pipelines.policy.model import ChunkPolicy, PolicyConfig
from pipelines.policy.runner import ChunkPolicyRunner
from pipelines.runtime.checkpoints import load_state, read_meta, resolve_checkpoint
from pipelines.simulator.controllers import CONTROLLERS, make_controller
from pipelines.simulator.tasks import TASKS


class Policy(Protocol):
    """What eval-policy drives: reset before each episode, one action per observation."""

    def reset(self) -> None: ...

    def act(self, observation: dict) -> np.ndarray: ...


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
    name = source[len(CONTROLLER_PREFIX) :]
    if name not in CONTROLLERS:
        raise DatasetError(
            f"{source}: no such controller (one of {', '.join(sorted(CONTROLLERS))})"
        )
    return LoadedController(name, options.name or source, source)


# --------------------------------------------------------------------------- policy checkpoints


def trained_prompt(meta: dict) -> str:
    """The prompt a policy checkpoint was trained to run with: `none` (the bare task) for plain
    BC (`--conditioning none`), `positive` for AWBC; a checkpoint from before `conditioning` was
    recorded: `positive` if its tasks carry advantage labels, else `none`."""
    conditioning = meta.get("conditioning")
    if conditioning == "none":
        return "none"
    if conditioning is None:
        tasks = meta["tasks"].values()
        return "positive" if any(label_of(t) is not None for t in tasks) else "none"
    return "positive"


def resolve_prompt(prompt: str | None, meta: dict) -> tuple[str, str]:
    """(prompt text, bare task text) for --prompt positive|negative|none|"<text>" (None: the
    checkpoint's own, `trained_prompt`).

    positive / negative name the top / bottom label of the checkpoint's labeling (binary:
    "Advantage: positive" / "negative"; n_slices: the highest / lowest slice) of the simulated
    task's text; other text must be one of the checkpoint's prompts.
    """
    if prompt is None:
        prompt = trained_prompt(meta)
    tasks = list(meta["tasks"].values())
    bases = list(dict.fromkeys(base_task(t) for t in tasks))
    sim_task = TASKS.get(meta["env"]["task"])
    sim_text = sim_task.text if sim_task is not None else None
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
    """A `policy` checkpoint: config, weights and the prompt to run it with; `units`: the
    joints' units it was trained in (its meta's; None: degrees, from before units were
    recorded), converted at the simulator's edge with the arm's `calibration`."""

    name: str
    source: str
    env: EnvSettings
    model_config: dict
    state: dict
    prompt: str
    bare_prompt: str
    cfg_scale: float
    n_action_steps: int
    units: dict | None = None
    calibration: dict | None = None

    def converters(self) -> tuple[JointConverter | None, JointConverter | None]:
        """(observation.state's, the joint action's) converters between the simulator's
        degrees and the policy's units; a one-line DatasetError when a calibration is needed
        and not given."""
        if not self.units:
            return None, None
        hint = (
            "the policy was trained in them: give --calibration FILE|ID (the calibration of the "
            "arm its data was recorded with)"
        )
        joints, arm = self.units["joints"], self.calibration
        state = JointConverter(joints, self.units["observation.state"], arm, self.name, hint)
        action_units = self.units.get("action")
        if self.env.action_mode != "joint" or action_units is None:
            return state, None
        return state, JointConverter(joints, action_units, arm, self.name, hint)

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
        self.converters()

    def make(self, env) -> Policy:
        torch.set_num_threads(1)
        model = ChunkPolicy(PolicyConfig(**self.model_config))
        model.load_state_dict(self.state)
        state_units, action_units = self.converters()
        return ChunkPolicyRunner(
            model,
            self.prompt,
            self.bare_prompt,
            self.cfg_scale,
            self.n_action_steps,
            state_units=state_units,
            action_units=action_units,
        )


@register_loader("policy")
def load_chunk_policy(path: Path, options: ArmOptions) -> LoadedChunkPolicy:
    meta = read_meta(path, "policy")
    try:
        env = EnvSettings(**meta["env"])
        chosen = options.prompt if options.prompt is not None else trained_prompt(meta)
        prompt, bare = resolve_prompt(chosen, meta)
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
    name = options.name or _arm_name(path, chosen, options)
    state = load_state(path)["model"]
    units = meta.get("units")
    if units is not None and not (
        isinstance(units, dict) and {"joints", "observation.state"} <= set(units)
    ):
        raise DatasetError(f"{path}/policy.json: units is {units!r}, not the policy's units")
    return LoadedChunkPolicy(
        name,
        str(path),
        env,
        model_config,
        state,
        prompt,
        bare,
        options.cfg_scale,
        n_steps,
        units,
        options.calibration,
    )


def _arm_name(path: Path, prompt: str, options: ArmOptions) -> str:
    run = path.parent.name if path.name.startswith("checkpoint_") else path.name
    name = f"{run}:{prompt}"
    return name + (f"@cfg{options.cfg_scale:g}" if options.cfg_scale != 1.0 else "")


def load_source(source: str, options: ArmOptions) -> LoadedPolicy:
    """A controller or a checkpoint of a registered kind; one-line DatasetErrors otherwise."""
    if source.startswith(CONTROLLER_PREFIX):
        return load_controller(source, options)
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{source}: no such checkpoint (or controller:<name>)")
    path, kind = resolve_checkpoint(source)
    if kind not in LOADERS:
        raise DatasetError(
            f"{source}: {_a(kind)} checkpoint; eval-policy evaluates policies "
            f"(checkpoint kinds: {', '.join(sorted(LOADERS))}; or controller:<name>)"
        )
    return LOADERS[kind](path, options)


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"
