"""HIL-SERL's action convention: end-effector deltas normalized to [-1, 1].

The agent acts in `[dx, dy, dz, gripper]`, each in [-1, 1]: the displacement of the tool point
as a share of the simulator's largest step per axis (`max_ee_step`, 2 cm at 10 fps), and the
gripper opening mapped from 0..100 (closed..open) to -1..1. `NormalizedEEDelta` wraps an
`SO101Env` in `action_mode="ee_delta"`; the env keeps the target inside its workspace box (and
IK keeps the gripper pointing down), so the wrapper only scales.

Datasets recorded with joint targets (`flywheel synth`, teleop) are converted to the same
actions by forward kinematics, `ee_delta_from_joint_targets`: the commanded tool displacement
is FK(joint targets) - FK(joints now), the target clipped to the workspace box and the step
to `max_ee_step` per axis, exactly as the env would have clipped it; the gripper is the target's.
The commanded target, not the next observed state, because the arm lags its targets (bounded
joint speed): the difference of consecutive states would under-state what was asked.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pipelines.simulator import kinematics as kin
from pipelines.simulator.env import DEFAULT_WORKSPACE

GRIPPER_RANGE = 100.0
EE_ACTION_NAMES = ("dx", "dy", "dz", "gripper")


def normalize_ee_action(raw: np.ndarray, max_ee_step: float) -> np.ndarray:
    """[dx, dy, dz] in m and gripper 0..100 -> [-1, 1]^4 (clipped)."""
    raw = np.asarray(raw, dtype=np.float64)
    out = np.empty(raw.shape, dtype=np.float32)
    out[..., :3] = raw[..., :3] / max_ee_step
    out[..., 3] = raw[..., 3] / (GRIPPER_RANGE / 2.0) - 1.0
    return np.clip(out, -1.0, 1.0)


def denormalize_ee_action(action: np.ndarray, max_ee_step: float) -> np.ndarray:
    """[-1, 1]^4 -> [dx, dy, dz] in m and gripper 0..100 (the input clipped to [-1, 1])."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    out = np.empty(a.shape, dtype=np.float32)
    out[..., :3] = a[..., :3] * max_ee_step
    out[..., 3] = (a[..., 3] + 1.0) * (GRIPPER_RANGE / 2.0)
    return out


def ee_delta_from_joint_targets(
    joints: np.ndarray,
    joint_targets: np.ndarray,
    max_ee_step: float = 0.02,
    workspace: tuple = DEFAULT_WORKSPACE,
) -> np.ndarray:
    """Raw EE-delta actions (N x 4: m, m, m, gripper 0..100) that joint targets commanded.

    `joints` and `joint_targets`: N x 6 (degrees, gripper 0..100), the state when each target
    was sent and the target (module docstring).
    """
    joints = np.atleast_2d(np.asarray(joints, dtype=np.float64))
    targets = np.atleast_2d(np.asarray(joint_targets, dtype=np.float64))
    low, high = np.asarray(workspace[0]), np.asarray(workspace[1])
    out = np.empty((len(joints), 4), dtype=np.float32)
    for i, (now, target) in enumerate(zip(joints, targets, strict=True)):
        tool = kin.tool_position(now)
        goal = np.clip(kin.tool_position(target), low, high)
        out[i, :3] = np.clip(goal - tool, -max_ee_step, max_ee_step)
        out[i, 3] = np.clip(target[5], 0.0, GRIPPER_RANGE)
    return out


class NormalizedEEDelta(gym.ActionWrapper):
    """An `SO101Env` in `ee_delta` mode acting on normalized `[dx, dy, dz, gripper]` in [-1, 1]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "action_mode", None) != "ee_delta":
            raise ValueError("NormalizedEEDelta needs an SO101Env with action_mode='ee_delta'")
        self.max_ee_step = float(base.max_ee_step)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        return denormalize_ee_action(action, self.max_ee_step)

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """The normalized action of a raw `ee_delta` action (e.g. an operator's)."""
        return normalize_ee_action(raw, self.max_ee_step)
