"""An SO-101 workcell (a `FollowerArm` and its cameras) as the collection loop's environment.

`actors.collection.episode.run_collection_episode` drives an environment with `reset` / `step` /
`get_state` / `set_state`; `ArmWorkcell` gives it those over the real Feetech driver code, so
`flywheel collect --robot emulated` and a real arm (`--follower-port`) run the same loop as the
simulator:

* **A step is step-and-settle**: an action is joint targets (degrees, gripper 0-100), clamped to
  the follower's calibrated range; the follower is commanded (in its own `max_step`-limited
  moves) until the five arm joints read within `tolerance` of them and the gripper is there too
  or has stopped (a closed gripper stalls on what it holds). The next frame is read only then,
  so frame i+1 shows what action i did at any machine load; the dataset's timestamps stay
  frame_index / fps, as in the simulator. A move not finished within `move_timeout_s` is a
  RuntimeError naming the joint (`actors.collection.episode.return_to_pose`'s rule).
* **Undo** (`set_state`) is `return_to_pose`: the follower moves back to the joint pose read at
  `get_state` and the step counter is restored. Only the arm is restored: on a real arm the
  cube (anything the action pushed or dropped) stays where it is. The emulated workcell does
  the same on purpose: its simulator's cube is *not* reset, so emulation shows what an undo on
  a real arm does (an undo is exact only in the simulator, `SO101Env.set_state`).
* **Observations** are the follower's read joints (`observation.state`) and the cameras'
  images (`observation.images.front` / `.wrist`, resized to `image_size`).
* **Task state**: the emulated workcell (`EmulatedSO101`: servo emulators on pseudo-terminals,
  the follower coupled to a simulator, the cameras rendering it) has a `world`: progress, stage
  and success come from it, as do the grasp-region critical rule, the scripted controllers'
  candidates (`sim_env`, the coupled simulator) and the progress admin. A real arm has no
  world: progress is unknown (NaN), success never declared (the episode ends at its step
  limit), and only `every:K` critical states, policy responders and a keyboard/API admin apply.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from actors.collection.episode import return_to_pose
from actors.so101 import RobotConfig, open_so101
from pipelines.simulator import SO101Env
from pipelines.simulator import kinematics as kin
from pipelines.simulator.tasks import get_task
from pipelines.simulator.world import HOME_JOINTS
from pipelines.vision.images import resize


class ArmWorkcell:
    """A follower and cameras as a gym-like env for the collection loop (module docstring)."""

    def __init__(
        self,
        arm,
        cameras: dict,
        image_size: int,
        max_episode_steps: int,
        *,
        robot=None,
        sim_env=None,
        tolerance: float = 1.0,
        move_timeout_s: float = 60.0,
        period_s: float = 0.02,
    ):
        """`cameras`: key -> a callable returning an RGB frame; `robot`: an `EmulatedSO101`
        (its `world` then gives the task state), `sim_env` the simulator env its controllers
        and policies are checked against."""
        self.arm = arm
        self.cameras = cameras
        self.image_size = image_size
        self.max_episode_steps = max_episode_steps
        self.robot = robot
        self.sim_env = sim_env
        self.world = robot.world if robot is not None else None
        self.tolerance = tolerance
        self.move_timeout_s = move_timeout_s
        self.period_s = period_s
        self._steps = 0
        self._closers: list = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        robot: RobotConfig,
        *,
        emulated: bool,
        task: str,
        seed: int,
        image_size: int,
        max_episode_steps: int | None,
        fps: int,
    ) -> ArmWorkcell:
        """`open_so101`'s follower and cameras in this process: an `EmulatedSO101` (its world
        gives the task state) or a real follower on `robot.follower_port` and OpenCV cameras."""
        arms = open_so101(
            robot, emulated=emulated, task=task, seed=seed, image_size=image_size, leader=False
        )
        cameras = {key: (lambda cam=cam: cam.latest()[0]) for key, cam in arms.cameras.items()}
        steps = max_episode_steps or get_task(task).episode_steps(fps)
        if emulated:
            sim_env = arms.robot.env
        else:  # the spaces the policies are checked against (no world state is read from it)
            sim_env = SO101Env(task, fps=fps, image_size=image_size, render_images=False)
        cell = cls(arms.follower, cameras, image_size, steps, robot=arms.robot, sim_env=sim_env)
        cell._closers = [arms.close]
        return cell

    # ------------------------------------------------------------------ the env interface

    @property
    def unwrapped(self) -> ArmWorkcell:
        return self

    @property
    def elapsed_steps(self) -> int:
        return self._steps

    def joint_targets(self, action: np.ndarray) -> np.ndarray:
        """An action is joint targets: kept in the simulator's limits and the arm's range."""
        goal = kin.clip_joints(np.asarray(action, dtype=np.float64))
        return np.clip(goal, self.arm.low, self.arm.high)

    def reset(self, *, seed: int | None = None):
        """The follower moves home; the emulated world gets a new cube placement."""
        self._move(HOME_JOINTS)
        if self.robot is not None and seed is not None:
            self.robot.reset(seed)
        self._steps = 0
        return self._observation(), self._info()

    def step(self, action: np.ndarray):
        self._move(self.joint_targets(action))
        self._steps += 1
        info = self._info()
        success = bool(info["success"])
        truncated = self._steps >= self.max_episode_steps and not success
        return self._observation(), float(success), success, truncated, info

    def get_state(self) -> dict:
        """What an undo restores: the follower's joint pose and the step count (not the cube)."""
        return {"joints": np.asarray(self.arm.read(), dtype=np.float32), "steps": self._steps}

    def set_state(self, state: dict):
        """Undo: `return_to_pose` to the recorded joints (module docstring: the arm only)."""
        return_to_pose(
            self.arm,
            state["joints"],
            tolerance=self.tolerance,
            timeout_s=self.move_timeout_s,
            period_s=self.period_s,
        )
        self._steps = int(state["steps"])
        return self._observation(), self._info()

    def close(self) -> None:
        for close in self._closers:
            with contextlib.suppress(Exception):  # shutting down: best effort
                close()
        self._closers = []

    # ------------------------------------------------------------------ helpers

    def _move(self, goal: np.ndarray) -> None:
        """Command `goal` until the arm joints are there and the gripper is there or stalled."""
        goal = np.clip(np.asarray(goal, dtype=np.float64), self.arm.low, self.arm.high)
        deadline = time.monotonic() + self.move_timeout_s
        previous_gripper, still = None, 0
        while True:
            now = np.asarray(self.arm.read(), dtype=np.float64)
            error = np.abs(now - goal)
            moved = previous_gripper is None or abs(now[5] - previous_gripper) > 0.2
            still = 0 if moved else still + 1
            previous_gripper = now[5]
            gripper_done = error[5] <= self.tolerance or still >= 5
            if float(error[:5].max()) <= self.tolerance and gripper_done:
                return
            if time.monotonic() > deadline:
                worst = int(np.argmax(error))
                raise RuntimeError(
                    f"follower: joint {worst} is {error[worst]:.1f} from its goal after "
                    f"{self.move_timeout_s:.0f} s"
                )
            self.arm.command(goal)
            time.sleep(self.period_s)

    def _observation(self) -> dict:
        obs = {"observation.state": np.asarray(self.arm.read(), dtype=np.float32)}
        for key, grab in self.cameras.items():
            obs[key] = resize(np.asarray(grab()), self.image_size)
        return obs

    def _info(self) -> dict:
        world = self.world
        if world is None:
            return {"progress": float("nan"), "stage": 0, "success": False}
        return {
            "progress": float(world.progress()),
            "stage": int(world.stage()),
            "success": bool(world.success()),
        }
