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

import contextlib
import time

import numpy as np

from actors.hilserl.collector import CollectorConfig, EpisodeBuilder
from pipelines.simulator import kinematics as kin
from pipelines.simulator.env import DEFAULT_WORKSPACE, TIME_LIMIT_S
from pipelines.simulator.world import HOME_JOINTS
from pipelines.simulator.wrappers import (
    denormalize_ee_action,
    ee_delta_from_joint_targets,
    normalize_ee_action,
)

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
        encoder=None,
        reward=None,
        seed: int = 0,
        max_step: float = 10.0,
        release_deg: float = 0.5,
        release_s: float = 0.5,
    ):
        import ray

        from actors.arm import FollowerArm, LeaderArm
        from actors.camera import OpenCVCamera, RobotCamera
        from actors.priority import at_normal_priority

        self.cfg = cfg
        self.encoder = encoder
        self.reward = reward
        self.release_deg = release_deg
        self.release_ticks = max(1, round(release_s * cfg.fps))
        self.max_steps = cfg.max_episode_steps or round(TIME_LIMIT_S[cfg.task] * cfg.fps)
        self.robot = None
        zero = {"num_cpus": 0}
        if cfg.robot == "emulated":
            from actors.emulated_robot import EMULATED_CALIBRATION, EmulatedSO101

            self.robot = (
                ray.remote(at_normal_priority(EmulatedSO101))
                .options(**zero)
                .remote(task=cfg.task, seed=seed, image_size=cfg.image_size)
            )
            ports = ray.get(self.robot.ports.remote())
            follower_port, leader_port = ports["follower"], ports["leader"]
            follower_cal = leader_cal = EMULATED_CALIBRATION
            camera = ray.remote(at_normal_priority(RobotCamera)).options(**zero)
            self.cameras = {k: camera.remote(self.robot, k) for k in cfg.cameras}
            if cfg.operator:
                ray.get(self.robot.start_operator.remote(seed, float(cfg.fps)))
        else:
            from actors.feetech.calibration import DEFAULT_CALIBRATION_DIR, load_calibration

            directory = cfg.calibration_dir or DEFAULT_CALIBRATION_DIR
            follower_cal = load_calibration(cfg.follower_id, directory)
            leader_cal = load_calibration(cfg.leader_id, directory)
            follower_port, leader_port = cfg.follower_port, cfg.leader_port
            camera = ray.remote(at_normal_priority(OpenCVCamera)).options(**zero)
            self.cameras = {k: camera.remote(src) for k, src in cfg.real_cameras.items()}
        # an emulated bus stalls when the machine is busy (its emulator is a thread in another
        # process), which a real one does not: more retries before a timeout is a fault
        retries = 20 if cfg.robot == "emulated" else 3
        # as actors.arm's follower_actor / leader_actor: restarted (re-handshake) if they die
        arm = {"max_restarts": 3, "max_task_retries": 3, **zero}
        self.follower = (
            ray.remote(at_normal_priority(FollowerArm))
            .options(**arm)
            .remote(follower_port, follower_cal, max_step=max_step, retries=retries)
        )
        self.leader = (
            ray.remote(at_normal_priority(LeaderArm))
            .options(**arm)
            .remote(leader_port, leader_cal, retries=retries)
        )

    # ------------------------------------------------------------------ I/O

    def _observe(self) -> dict:
        import ray

        from pipelines.vision.images import resize

        state_ref = self.follower.read.remote()
        frame_refs = {k: cam.latest.remote() for k, cam in self.cameras.items()}
        state = ray.get(state_ref)
        obs = {"observation.state": np.asarray(state, dtype=np.float32)}
        for k, ref in frame_refs.items():
            obs[k] = resize(ray.get(ref)[0], self.cfg.image_size)
        return obs

    def _success(self, obs: dict) -> tuple[float, bool, bool]:
        """(reward, terminated, the task's own success when known)."""
        import ray

        real = bool(ray.get(self.robot.state.remote())["success"]) if self.robot else False
        if self.reward is None:
            return float(real), real, real
        reward = self.reward(obs)
        return reward, bool(reward > 0 and self.cfg.terminate_on_success), real

    def _go_home(self, dt: float) -> None:
        import ray

        for _ in range(60):
            state = np.asarray(ray.get(self.follower.read.remote()), dtype=np.float64)
            if np.abs(state[:5] - HOME_JOINTS[:5]).max() < 2.0:
                break
            ray.get(self.follower.command.remote(HOME_JOINTS))
            time.sleep(dt)

    # ------------------------------------------------------------------ episodes

    def episode(self, act, seed: int):
        import ray

        cfg = self.cfg
        dt = 1.0 / cfg.fps
        ray.get(self.leader.release.remote())
        self._go_home(dt)
        if self.robot is not None:
            ray.get(self.robot.reset.remote(seed))
        if hasattr(self.reward, "reset"):
            self.reward.reset()
        builder = EpisodeBuilder(cfg, self.encoder)
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
        info = {
            "seed": seed,
            "success": success_seen,
            "length": len(builder.actions),
            "return": float(np.sum(builder.rewards)),
            "intervention_steps": int(np.sum(builder.interventions)),
            "takeovers": takeovers,
            "late_ticks": late,
            "seconds": time.monotonic() - started,
        }
        return builder.build(terminated, info)

    def close(self) -> None:
        import ray

        for actor in (self.follower, self.leader, *self.cameras.values()):
            # shutting down: torque off is best effort, nothing more to say
            with contextlib.suppress(Exception):
                stop = actor.shutdown if hasattr(actor, "shutdown") else actor.close
                ray.get(stop.remote(), timeout=10)
        if self.robot is not None:
            with contextlib.suppress(Exception):
                ray.get(self.robot.close.remote(), timeout=10)
