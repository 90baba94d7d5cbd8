"""Observation frames as the replay buffer keeps them, and the stack of the last few.

A frame is the joints (`observation.state`, float32) and either the camera images (uint8; the
`drqv2` encoder) or a frozen encoder's features (`features`, float16), computed once per frame.
The collectors build episodes of them; a saved policy builds them the same way to act.
"""

from __future__ import annotations

from collections import deque

import numpy as np

STATE_KEY = "observation.state"
FEATURES_KEY = "features"


class FrameStack:
    """The last `k` observation frames (the first one repeated at an episode's start)."""

    def __init__(self, k: int):
        self.k = k
        self.frames: deque = deque(maxlen=k)

    def reset(self, frame: dict) -> None:
        self.frames.clear()
        for _ in range(self.k):
            self.frames.append(frame)

    def push(self, frame: dict) -> None:
        self.frames.append(frame)

    def stacked(self) -> dict[str, np.ndarray]:
        return {key: np.stack([f[key] for f in self.frames]) for key in self.frames[0]}


def replay_frame(obs: dict, cameras: list[str], encoder=None) -> dict:
    """The frame the replay buffer keeps of an observation: the joints, and the frozen
    encoder's features (float16) or, without one, the camera images."""
    out = {STATE_KEY: np.asarray(obs[STATE_KEY], dtype=np.float32)}
    if encoder is not None:
        feats = encoder.features({k: obs[k] for k in encoder.cameras})[0]
        out[FEATURES_KEY] = feats.astype(np.float16)
    else:
        for key in cameras:
            out[key] = obs[key]
    return out
