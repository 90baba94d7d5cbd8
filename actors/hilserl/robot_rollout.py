"""HIL-SERL episodes on an SO-101 through the arm and camera actors: emulated or real.

The collector drives a `FollowerArm`, a `LeaderArm` and camera actors (`actors.arm`,
`actors.camera`), each a Ray actor Ray restarts, on an absolute-time grid at `fps`:

* **Policy ticks.** Read the follower's joints and the newest camera frames; the policy's
  normalized `[dx, dy, dz, gripper]` becomes a tool-point target (kept in the simulator's
  workspace box) and joint goals by the same IK as the simulator's `ee_delta` mode; the
  follower clamps them to its range and `max_step`. Meanwhile the leader follows the follower
  with torque on (`LeaderArm.follow`), so the operator's hand finds it where the robot is.
* **Takeover** (`LeaderArm.poll_intervention`, the documented rule): an operator who takes hold
  of the leader and pushes it more than its grab threshold away starts an intervention; the
  leader's torque goes off and the follower follows the leader. The transition stores the end-
  effector delta the leader commanded (forward kinematics of the leader's joints against the
  follower's, as `ee_delta_from_joint_targets` converts teleop data), flagged as intervention.
* **Hand-back**: when the operator lets go (the leader moves less than `release_deg` for
  `release_s`), `end_intervention` puts the leader back on torque, following the follower, and
  the policy drives again.
* **Episode**: starts with the follower moved home; ends on success (the emulated world's, or
  the classifier's) or at the time limit. `--robot emulated` runs all of it against
  `EmulatedSO101` (servo emulators on pseudo-terminals behind the real Feetech driver, the
  follower coupled to the simulator, its cameras rendering it) with a simulated operator's hand
  on the leader (`EmulatedSO101.start_operator`).
"""

from __future__ import annotations

import time

import numpy as np
import ray

from actors.hilserl.config import CollectorConfig, EpisodeSpec, HilserlRobotConfig
from actors.hilserl.episodes import EpisodeBuilder
from actors.priority import at_normal_priority
from actors.so101 import open_so101
from pipelines.simulator import kinematics as kin
from pipelines.simulator.env import DEFAULT_WORKSPACE
from pipelines.simulator.tasks import get_task
from pipelines.simulator.world import HOME_JOINTS
from pipelines.simulator.wrappers import (
    denormalize_ee_action,
    ee_delta_from_joint_targets,
    normalize_ee_action,
)
from pipelines.vision.images import resize

MAX_EE_STEP = 0.02


def ee_goal(joints: np.ndarray, raw_action: np.ndarray, workspace=DEFAULT_WORKSPACE) -> np.ndarray:
    """Joint goals for a raw EE-delta action from `joints` (the simulator's `ee_delta` rule)."""
    joints = np.asarray(joints, dtype=np.float64)
    delta = np.clip(raw_action[:3], -MAX_EE_STEP, MAX_EE_STEP)
    target = np.clip(kin.tool_position(joints) + delta, workspace[0], workspace[1])
    goal = kin.inverse_kinematics(target, joints)
    goal[5] = float(np.clip(raw_action[3], 0.0, 100.0))
    return kin.clip_joints(goal)


class RobotRollout:
    """Episodes on the arm actors (module docstring)."""

    def __init__(
        self,
        cfg: CollectorConfig,
        spec: EpisodeSpec,
        robot: HilserlRobotConfig,
        encoder=None,
        reward=None,
        seed: int = 0,
        max_step: float = 10.0,
        release_deg: float = 0.5,
        release_s: float = 0.5,
    ):
        self.cfg = cfg
        self.spec = spec
        self.encoder = encoder
        self.reward = reward
        self.release_deg = release_deg
        self.release_ticks = max(1, round(release_s * cfg.fps))
        self.max_steps = spec.max_episode_steps or get_task(cfg.task).episode_steps(cfg.fps)
        # the workcell as Ray actors at normal priority, the arms restarted (re-handshaking)
        # if they die; an emulated bus gets a longer timeout and more retries (actors.so101)
        self.arms = open_so101(
            robot.arm,
            emulated=robot.kind == "emulated",
            task=cfg.task,
            seed=seed,
            image_size=spec.image_size,
            cameras=spec.cameras,
            max_step=max_step,
            remote=True,
            wrap=at_normal_priority,
            actor_options={"num_cpus": 0},
        )
        self.robot, self.follower, self.leader = (
            self.arms.robot,
            self.arms.follower,
            self.arms.leader,
        )
        self.cameras = self.arms.cameras
        if self.robot is not None and cfg.operator:
            ray.get(self.robot.start_operator.remote(seed, float(cfg.fps)))

    # ------------------------------------------------------------------ I/O

    def _observe(self) -> dict:
        state_ref = self.follower.read.remote()
        frame_refs = {k: cam.latest.remote() for k, cam in self.cameras.items()}
        state = ray.get(state_ref)
        obs = {"observation.state": np.asarray(state, dtype=np.float32)}
        for k, ref in frame_refs.items():
            obs[k] = resize(ray.get(ref)[0], self.spec.image_size)
        return obs

    def _success(self, obs: dict) -> tuple[float, bool, bool]:
        """(reward, terminated, the task's own success when known)."""
        real = bool(ray.get(self.robot.state.remote())["success"]) if self.robot else False
        if self.reward is None:
            return float(real), real, real
        reward = self.reward(obs)
        return reward, bool(reward > 0 and self.cfg.terminate_on_success), real

    def _go_home(self, dt: float) -> None:
        for _ in range(60):
            state = np.asarray(ray.get(self.follower.read.remote()), dtype=np.float64)
            if np.abs(state[:5] - HOME_JOINTS[:5]).max() < 2.0:
                break
            ray.get(self.follower.command.remote(HOME_JOINTS))
            time.sleep(dt)

    # ------------------------------------------------------------------ episodes

    def episode(self, act, seed: int):
        cfg = self.cfg
        dt = 1.0 / cfg.fps
        ray.get(self.leader.release.remote())
        self._go_home(dt)
        if self.robot is not None:
            ray.get(self.robot.reset.remote(seed))
        if hasattr(self.reward, "reset"):
            self.reward.reset()
        builder = EpisodeBuilder(self.spec, self.encoder)
        obs = self._observe()
        ray.get(self.leader.follow.remote(obs["observation.state"]))
        stacked = builder.observe(obs, first=True)
        intervening, still, previous_leader = False, 0, None
        success_seen, takeovers, late = False, 0, 0
        terminated = truncated = False
        started = next_tick = time.monotonic()
        while not (terminated or truncated):
            state = obs["observation.state"]
            if not intervening and ray.get(self.leader.poll_intervention.remote()):
                intervening, still, previous_leader = True, 0, None
                takeovers += 1
            if intervening:
                leader = np.asarray(ray.get(self.leader.read.remote()), dtype=np.float64)
                ray.get(self.follower.command.remote(leader))
                raw = ee_delta_from_joint_targets(state, leader, MAX_EE_STEP)[0]
                stored = normalize_ee_action(raw, MAX_EE_STEP)
                moved = (
                    np.inf if previous_leader is None else np.abs(leader - previous_leader).max()
                )
                still = still + 1 if moved < self.release_deg else 0
                previous_leader = leader
                step_intervened = True
                if still >= self.release_ticks:  # the operator let go
                    ray.get(self.leader.end_intervention.remote(state))
                    intervening = False
            else:
                stored = np.asarray(act(stacked), dtype=np.float32)
                goal = ee_goal(state, denormalize_ee_action(stored, MAX_EE_STEP))
                ray.get(self.follower.command.remote(goal))
                ray.get(self.leader.follow.remote(state))
                step_intervened = False
            next_tick += dt
            pause = next_tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                late += 1
                next_tick = time.monotonic()
            obs = self._observe()
            reward, terminated, real = self._success(obs)
            success_seen |= real or (self.robot is None and terminated)
            builder.step(stored, reward, step_intervened)
            stacked = builder.observe(obs)
            if len(builder.actions) >= self.max_steps and not terminated:
                truncated = True
        if intervening:
            ray.get(self.leader.end_intervention.remote(obs["observation.state"]))
        info = builder.info(
            seed,
            success_seen,
            takeovers=takeovers,
            late_ticks=late,
            seconds=time.monotonic() - started,
        )
        return builder.build(terminated, info)

    def close(self) -> None:
        """Torque off and close the workcell, best effort."""
        self.arms.close()
