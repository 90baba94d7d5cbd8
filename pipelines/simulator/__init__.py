"""Embedded SO-101 tabletop simulator (kinematic, no physics engine).

    kinematics   SO-101 forward kinematics from the real URDF, damped-least-squares IK
    world        SO101World: arm, cube, grasp model, task progress and stages
    render       Renderer: OpenCV front and wrist cameras
    env          SO101Env: the Gymnasium environment
    controllers  scripted controllers (expert, hesitant, noisy, failing) and the Operator
    tasks        the task table: SimTask per task (text, stages, time limit, cameras)

The names below are imported lazily, so ``pipelines.simulator.kinematics`` alone stays light.
Importing the package registers the environment with Gymnasium:
``gymnasium.make("flywheel/SO101ReachGrasp-v0")`` and ``"flywheel/SO101PickLift-v0"`` (keyword
arguments as ``SO101Env``'s; the environment truncates at its own time limit).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SO101World": "pipelines.simulator.world",
    "Renderer": "pipelines.simulator.render",
    "SO101Env": "pipelines.simulator.env",
    "CONTROLLERS": "pipelines.simulator.controllers",
    "ExpertController": "pipelines.simulator.controllers",
    "HesitantController": "pipelines.simulator.controllers",
    "NoisyController": "pipelines.simulator.controllers",
    "FailingController": "pipelines.simulator.controllers",
    "Operator": "pipelines.simulator.controllers",
    "make_controller": "pipelines.simulator.controllers",
    "run_episode": "pipelines.simulator.controllers",
}
__all__ = sorted(_EXPORTS)

from gymnasium.envs.registration import register, registry  # noqa: E402

from pipelines.simulator.tasks import TASKS  # noqa: E402

for _task in TASKS.values():
    if f"flywheel/{_task.gym_id}" not in registry:
        register(
            f"flywheel/{_task.gym_id}",
            entry_point="pipelines.simulator.env:SO101Env",
            kwargs={"task": _task.name},
        )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines.simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
