"""A trained chunk policy as a `Policy` (reset / act): prompts, CFG, chunked execution.

At each re-planning step the model predicts a chunk of `chunk_size` actions from the current
observation; the first `n_action_steps` are executed, then it predicts again (LeRobot's
`n_action_steps`). Deterministic: the same observations give the same actions.

Classifier-free guidance in action space (`cfg_scale` beta): the chunk is
a_uncond + beta * (a_cond - a_uncond), a_cond under the chosen prompt and a_uncond under the
bare task text (what indicator dropout trained); beta = 1 is the prompt alone (one forward
pass), beta > 1 pushes further in the direction the label points.

Units: the runner meets the simulator or arm in Flywheel's degrees. A policy trained in other
units (LeRobot's range_m100_100) gets `state_units` / `action_units`
(`pipelines.dataset.units.JointConverter`s): its observation.state is converted to its units,
and its joint actions back to degrees.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.dataset.units import JointConverter
from pipelines.policy.model import ChunkPolicy, tokenize
from pipelines.vision.images import resize


def guided(cond: np.ndarray, uncond: np.ndarray, beta: float) -> np.ndarray:
    """Classifier-free guidance in action space: a_uncond + beta * (a_cond - a_uncond)."""
    return uncond + beta * (cond - uncond)


class ChunkPolicyRunner:
    """`reset()` / `act(observation) -> action` for a ChunkPolicy under one prompt."""

    def __init__(
        self,
        model: ChunkPolicy,
        prompt: str,
        bare_prompt: str,
        cfg_scale: float = 1.0,
        n_action_steps: int = 5,
        state_units: JointConverter | None = None,
        action_units: JointConverter | None = None,
    ):
        self.model = model.eval()
        self.config = model.config
        vocab = self.config.prompt_vocab
        self.tokens = torch.from_numpy(tokenize([prompt, bare_prompt], vocab))
        self.cfg_scale = float(cfg_scale)
        self.n_action_steps = max(1, min(int(n_action_steps), self.config.chunk_size))
        self._queue: list[np.ndarray] = []
        self.state_units, self.action_units = state_units, action_units

    def reset(self) -> None:
        self._queue = []

    def chunk(self, observation: dict) -> np.ndarray:
        """The chunk (H x A) the policy predicts for one observation (in degrees)."""
        size = self.config.image_size
        images = np.stack([resize(observation[k], size) for k in self.config.cameras])
        state = np.asarray(observation["observation.state"], dtype=np.float32)
        if self.state_units is not None:
            state = self.state_units.from_internal(state).astype(np.float32)
        guide = self.cfg_scale != 1.0
        n = 2 if guide else 1
        with torch.no_grad():
            out = self.model.predict(
                torch.from_numpy(np.repeat(images[None], n, axis=0)),
                torch.from_numpy(np.repeat(state[None], n, axis=0)),
                self.tokens[:n],
            ).numpy()
        chunk = guided(out[0], out[1], self.cfg_scale) if guide else out[0]
        return chunk if self.action_units is None else self.action_units.to_internal(chunk)

    def act(self, observation: dict) -> np.ndarray:
        if not self._queue:
            self._queue = list(self.chunk(observation)[: self.n_action_steps])
        return self._queue.pop(0).astype(np.float32)
