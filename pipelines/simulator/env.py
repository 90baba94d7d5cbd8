"""Gymnasium environment around ``SO101World``: fixed-rate control, two cameras, sparse reward."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pipelines.simulator import kinematics as kin
from pipelines.simulator.render import Renderer
from pipelines.simulator.tasks import DEFAULT_TASK, FRONT_CAMERA, WRIST_CAMERA, get_task
from pipelines.simulator.world import SO101World

STATE_KEY = "observation.state"
FRONT_KEY = FRONT_CAMERA
WRIST_KEY = WRIST_CAMERA
ACTION_MODES = ("joint", "ee_delta")
# Tool-point workspace for ee_delta actions (m): in front of the arm, above the table.
DEFAULT_WORKSPACE = ((0.08, -0.22, 0.01), (0.32, 0.22, 0.15))


class SO101Env(gym.Env):
    """SO-101 tabletop task (a `tasks.TASKS` name) at ``fps`` control steps per second.

    Actions: ``"joint"``: 6 absolute joint targets (degrees, gripper 0..100), clipped to the
    limits. ``"ee_delta"``: ``[dx, dy, dz, gripper]``: tool-point displacement (m per step, each
    axis clipped to ``max_ee_step``) from the current tool point, target kept inside
    ``workspace`` (a box above the table), solved with damped-least-squares IK keeping the
    gripper pointing down (wrist_roll kept); gripper absolute 0..100.

    Observations: ``observation.state`` (6 float32 joint values, same units) and RGB uint8
    images ``observation.images.front`` / ``observation.images.wrist``. With
    ``render_images=False`` the images are all zeros (same spaces, much faster; for statistics
    over many episodes).

    Reward 1.0 on success (else 0.0); success terminates; ``max_episode_steps`` truncates.
    The world (privileged state for scripted controllers) is ``env.world``. ``info`` carries
    progress, stage, stage_name, success and is_intervention (the ``is_intervention`` attribute,
    which an operator sets before ``step``; cleared after each step).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = DEFAULT_TASK,
        fps: int = 10,
        image_size: int = 128,
        action_mode: str = "joint",
        max_episode_steps: int | None = None,
        max_ee_step: float = 0.02,
        workspace: tuple[tuple[float, float, float], tuple[float, float, float]] = (
            DEFAULT_WORKSPACE
        ),
        render_images: bool = True,
        render_mode: str | None = None,
        lift_height: float = 0.05,
    ):
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.task = task
        self.fps = fps
        self.dt = 1.0 / fps
        self.image_size = image_size
        self.action_mode = action_mode
        self.max_episode_steps = max_episode_steps or get_task(task).episode_steps(fps)
        self.max_ee_step = max_ee_step
        self.workspace_low = np.array(workspace[0], dtype=np.float64)
        self.workspace_high = np.array(workspace[1], dtype=np.float64)
        self.render_images = render_images
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": fps}
        self.world = SO101World(task, seed=0, lift_height=lift_height)
        self.renderer = Renderer(image_size) if render_images or render_mode else None

        image_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(
            {
                STATE_KEY: spaces.Box(
                    kin.JOINT_LIMITS_LOW.astype(np.float32),
                    kin.JOINT_LIMITS_HIGH.astype(np.float32),
                    dtype=np.float32,
                ),
                FRONT_KEY: image_space,
                WRIST_KEY: image_space,
            }
        )
        if action_mode == "joint":
            self.action_space = spaces.Box(
                kin.JOINT_LIMITS_LOW.astype(np.float32),
                kin.JOINT_LIMITS_HIGH.astype(np.float32),
                dtype=np.float32,
            )
        else:
            step = np.float32(max_ee_step)
            self.action_space = spaces.Box(
                np.array([-step, -step, -step, 0.0], np.float32),
                np.array([step, step, step, 100.0], np.float32),
                dtype=np.float32,
            )
        self._steps = 0
        self._images: dict[str, np.ndarray] | None = None
        # Set by an intervening operator before ``step``; reported in that step's info.
        self.is_intervention = False

    # --------------------------------------------------------------------------------- API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.world.reset(self.np_random)
        self._steps = 0
        self.is_intervention = False
        return self._observation(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        self.world.set_joint_targets(self.joint_targets(action))
        self.world.step(self.dt)
        self._steps += 1
        success = self.world.success()
        truncated = self._steps >= self.max_episode_steps and not success
        info = self._info(success)
        self.is_intervention = False
        return self._observation(), float(success), success, truncated, info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: front and wrist images side by side."""
        if self.render_mode != "rgb_array":
            return None
        images = self._images
        if images is None or not self.render_images:
            images = self.renderer.render(self.world)
        return np.concatenate([images["front"], images["wrist"]], axis=1)

    def get_state(self) -> dict[str, Any]:
        """The full simulator state (world, step count, the env's random generator), copied.

        `set_state` of it restores the env exactly: the same actions from there give
        bit-identical observations, rewards and infos (the undo of a rejected action).
        """
        return {
            "world": self.world.get_state(),
            "steps": self._steps,
            "is_intervention": self.is_intervention,
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
        }

    def set_state(self, state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Restore a `get_state()`; returns the observation and info of the restored state."""
        self.world.set_state(state["world"])
        self._steps = int(state["steps"])
        self.is_intervention = bool(state["is_intervention"])
        self.np_random.bit_generator.state = copy.deepcopy(state["np_random"])
        return self._observation(), self._info()

    # ------------------------------------------------------------------------------ helpers
    @property
    def elapsed_steps(self) -> int:
        return self._steps

    def joint_targets(self, action: np.ndarray) -> np.ndarray:
        """The joint targets an action commands from the current state (6 values)."""
        action = np.asarray(action, dtype=np.float64)
        if self.action_mode == "joint":
            return kin.clip_joints(action)
        return self.ee_joint_targets(action[:3], action[3])

    def ee_joint_targets(self, delta: np.ndarray, gripper: float) -> np.ndarray:
        """Joint targets for an ``ee_delta`` action: clipped step, workspace, IK."""
        delta = np.clip(delta, -self.max_ee_step, self.max_ee_step)
        target = np.clip(self.world.tool_position + delta, self.workspace_low, self.workspace_high)
        joints = kin.inverse_kinematics(target, self.world.joints)
        joints[5] = min(max(float(gripper), 0.0), 100.0)
        return kin.clip_joints(joints)

    def _observation(self) -> dict[str, np.ndarray]:
        size = self.image_size
        if self.render_images:
            self._images = self.renderer.render(self.world)
            front, wrist = self._images["front"], self._images["wrist"]
        else:
            front = np.zeros((size, size, 3), np.uint8)
            wrist = np.zeros((size, size, 3), np.uint8)
        return {
            STATE_KEY: self.world.joints.astype(np.float32),
            FRONT_KEY: front,
            WRIST_KEY: wrist,
        }

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        world = self.world
        stage = world.stage()
        return {
            "progress": world.progress(),
            "stage": stage,
            "stage_name": world.stages[stage],
            "success": world.success() if success is None else success,
            "is_intervention": self.is_intervention,
            "held": world.held,
            "tool_position": world.tool_position,
            "cube_position": world.cube_position.copy(),
            "task": self.task,
            "step": self._steps,
        }
