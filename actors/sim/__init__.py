"""Embedded SO-101 tabletop simulator (kinematic, no physics engine).

    kinematics   SO-101 forward kinematics from the real URDF, damped-least-squares IK
    world        SO101World: arm, cube, grasp model, task progress and stages
    render       Renderer: OpenCV front and wrist cameras
    env          SO101Env: the Gymnasium environment
    controllers  scripted controllers (expert, hesitant, noisy, failing) and the Operator

The names below are imported lazily, so ``actors.sim.kinematics`` alone stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SO101World": "actors.sim.world",
    "Renderer": "actors.sim.render",
    "SO101Env": "actors.sim.env",
    "CONTROLLERS": "actors.sim.controllers",
    "ExpertController": "actors.sim.controllers",
    "HesitantController": "actors.sim.controllers",
    "NoisyController": "actors.sim.controllers",
    "FailingController": "actors.sim.controllers",
    "Operator": "actors.sim.controllers",
    "make_controller": "actors.sim.controllers",
    "run_episode": "actors.sim.controllers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'actors.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
