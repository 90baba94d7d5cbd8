"""Embedded SO-101 tabletop simulator (kinematic, no physics engine).

    kinematics   SO-101 forward kinematics from the real URDF, damped-least-squares IK
    world        SO101World: arm, cube, grasp model, task progress and stages
    render       Renderer: OpenCV front and wrist cameras
    env          SO101Env: the Gymnasium environment
    controllers  scripted controllers (expert, hesitant, noisy, failing) and the Operator

The names below are imported lazily, so ``actors.sim.kinematics`` alone stays light.
Importing the package registers the environment with Gymnasium:
``gymnasium.make("flywheel/SO101ReachGrasp-v0")`` and ``"flywheel/SO101PickLift-v0"`` (keyword
arguments as ``SO101Env``'s; the environment truncates at its own time limit).
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

from gymnasium.envs.registration import register, registry  # noqa: E402

for _id, _task in (("SO101ReachGrasp-v0", "reach_grasp"), ("SO101PickLift-v0", "pick_lift")):
    if f"flywheel/{_id}" not in registry:
        register(f"flywheel/{_id}", entry_point="actors.sim.env:SO101Env", kwargs={"task": _task})


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'actors.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
