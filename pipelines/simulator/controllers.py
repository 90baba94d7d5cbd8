"""Scripted controllers of graded quality and a simulated human operator for interventions.

Controllers read privileged state from ``env.world`` and return actions in the env's action mode
(``"joint"`` and ``"ee_delta"`` both supported; only in joint mode do they also turn wrist_roll
to square the jaws with the cube, which the grasp model does not require). Each has
``reset(seed)`` and ``__call__(obs, info) -> action`` and is deterministic given its seed.

    expert    smooth and direct: above the cube, descend, close (and lift for pick_lift)
    hesitant  the expert with pauses and back-offs (progress drops), ~2-3x longer
    noisy     the expert with action noise and jitter bursts: misses grasps, retries, slower
    failing   grasps beside the cube, closes too early, or (pick_lift) drops the cube
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pipelines.simulator import kinematics as kin
from pipelines.simulator.env import SO101Env

GRIPPER_OPEN = 50.0  # fingertip gap ~6.5 cm for a 2.5 cm cube
GRIPPER_CLOSED = 0.0
HOVER_HEIGHT = 0.05  # pre-grasp point: this far above the cube centre (m)

Policy = Callable[[dict, dict], np.ndarray]


class ExpertController:
    """Reactive pick controller; the phase follows from the world state every step.

    Not holding: open the gripper, rise if low and away from the cube, go to the pre-grasp point
    above it, descend to the cube centre, close. A closure that ends without the cube reopens
    and retries. Holding: hold still (reach_grasp) or lift straight up (pick_lift). Motion is
    a straight line toward the phase's waypoint at up to ``speed`` m/step with a smooth
    acceleration and a proportional slow-down near the waypoint.
    """

    speed = 0.005  # m per step (5 cm/s at 10 fps)
    accel = 0.002  # m per step, per step
    gain = 0.5  # fraction of the remaining distance covered per step near the waypoint
    grasp_tolerance = 0.004  # m: close when the tool is this near the grasp point
    align_tolerance = 0.006  # m: horizontal distance that counts as "above the cube"

    def __init__(self, env: SO101Env, seed: int | None = None):
        self.env = env.unwrapped
        self.world = self.env.world
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.resume()

    def resume(self) -> None:
        """Forget transient motion state (e.g. when taking over from another policy)."""
        self.closing = False
        self._speed = 0.0
        self._lift_from: float | None = None

    def __call__(self, obs: dict, info: dict) -> np.ndarray:
        waypoint, gripper = self.plan()
        return self.act(waypoint, gripper)

    # ------------------------------------------------------------------------------ planning
    def grasp_point(self) -> np.ndarray:
        """Where the tool should be to grasp: the cube centre."""
        return self.world.cube_position.copy()

    def plan(self) -> tuple[np.ndarray, float]:
        """(waypoint for the tool point, gripper command) for the current state."""
        world = self.world
        tool = world.tool_position
        if world.held:
            self.closing = False
            if world.task != "pick_lift":
                return tool, GRIPPER_CLOSED
            if self._lift_from is None:
                self._lift_from = float(tool[2])
            lift_to = self._lift_from + world.lift_height + 0.01
            return np.array([tool[0], tool[1], lift_to]), GRIPPER_CLOSED
        self._lift_from = None
        grasp = self.grasp_point()
        to_grasp = float(np.linalg.norm(grasp - tool))
        if self.closing:
            failed = world.gripper < world.contact_gripper - 2.0 or to_grasp > 0.015
            if not failed:
                return tool, GRIPPER_CLOSED
            self.closing = False
        above = grasp + np.array([0.0, 0.0, HOVER_HEIGHT])
        horizontal = float(np.hypot(*(grasp[:2] - tool[:2])))
        opened = world.gripper >= GRIPPER_OPEN - 2.0
        if horizontal > 0.02 and tool[2] < grasp[2] + 0.03:
            return np.array([tool[0], tool[1], above[2]]), GRIPPER_OPEN  # rise first
        if horizontal > self.align_tolerance or not opened:
            return above, GRIPPER_OPEN
        if to_grasp > self.grasp_tolerance:
            return grasp, GRIPPER_OPEN
        self.closing = True
        return tool, GRIPPER_CLOSED

    # ------------------------------------------------------------------------------- acting
    def step_toward(self, waypoint: np.ndarray) -> np.ndarray:
        """Next tool target on a straight line to ``waypoint`` (speed, acceleration limits)."""
        tool = self.world.tool_position
        offset = waypoint - tool
        distance = float(np.linalg.norm(offset))
        if distance < 1e-9:
            self._speed = 0.0
            return tool.copy()
        top_speed = max(self.speed, self._speed - self.accel)  # after a faster move: slow down
        self._speed = min(top_speed, self._speed + self.accel, self.gain * distance)
        return tool + offset * (self._speed / distance)

    def act(self, waypoint: np.ndarray, gripper: float, noise: np.ndarray | None = None):
        """Action moving the tool one step toward ``waypoint`` with a gripper command."""
        target = self.step_toward(waypoint)
        if noise is not None:
            target = target + noise
        return self.action_for(target, gripper)

    def action_for(self, tool_target: np.ndarray, gripper: float) -> np.ndarray:
        """The env action that sends the tool point to ``tool_target`` (one step away)."""
        if self.env.action_mode == "ee_delta":
            delta = tool_target - self.world.tool_position
            return np.array([*delta, gripper], dtype=np.float32)
        seed = self.world.joints
        seed[4] = self.wrist_roll()
        joints = kin.inverse_kinematics(tool_target, seed)
        joints[5] = gripper
        return kin.clip_joints(joints).astype(np.float32)

    def wrist_roll(self) -> float:
        """wrist_roll (deg) squaring the jaws with the cube's faces, nearest the current roll."""
        world = self.world
        roll = float(world.joints[4])
        if world.held:
            return roll
        closing_axis = world.pose.gripper_rotation[:, 0]
        azimuth = math.degrees(math.atan2(closing_axis[1], closing_axis[0]))
        turn = (math.degrees(world.cube_yaw) - azimuth + 45.0) % 90.0 - 45.0
        low, high = kin.JOINT_LIMITS_LOW[4], kin.JOINT_LIMITS_HIGH[4]
        return min(max(roll + turn, low), high)


class HesitantController(ExpertController):
    """The expert, slower, that 1-3 times stops for a while, backs off up and away, and retries."""

    speed = 0.004
    backoff_speed = 0.012

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        count = int(self.rng.integers(1, 4))
        # Hesitate when the tool first comes within these distances (m) of the grasp point.
        self._triggers = sorted(self.rng.uniform(0.01, 0.08, size=count).tolist(), reverse=True)
        self._pause = 0
        self._backoff = 0
        self._backoff_target: np.ndarray | None = None

    def __call__(self, obs: dict, info: dict) -> np.ndarray:
        world = self.world
        tool = world.tool_position
        if self._pause > 0:
            self._pause -= 1
            if self._pause == 0:
                self._backoff = int(self.rng.integers(6, 11))
                away = tool[:2] / max(float(np.hypot(*tool[:2])), 1e-6)  # toward the base
                retreat = self.rng.uniform(0.04, 0.07)
                self._backoff_target = np.array(
                    [
                        *(tool[:2] - away * retreat),
                        min(tool[2] + self.rng.uniform(0.04, 0.07), 0.11),
                    ]
                )
            self._speed = 0.0
            return self.action_for(tool, world.gripper if not self.closing else GRIPPER_CLOSED)
        if self._backoff > 0:
            self._backoff -= 1
            self._speed = self.backoff_speed
            return self.act(self._backoff_target, GRIPPER_OPEN)
        near = float(np.linalg.norm(self.grasp_point() - tool))
        if self._triggers and not world.held and not self.closing and near < self._triggers[0]:
            self._triggers.pop(0)
            self._pause = int(self.rng.integers(5, 13))
            return self.action_for(tool, world.gripper)
        return super().__call__(obs, info)


class NoisyController(ExpertController):
    """The expert with Gaussian action noise, jitter bursts and gripper noise."""

    noise = 0.002  # m, per axis, per step
    burst_noise = 0.010
    burst_probability = 0.05

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._burst = 0

    def __call__(self, obs: dict, info: dict) -> np.ndarray:
        waypoint, gripper = self.plan()
        if self._burst == 0 and self.rng.random() < self.burst_probability:
            self._burst = int(self.rng.integers(2, 6))
        scale = self.noise
        if self._burst > 0:
            self._burst -= 1
            scale = self.burst_noise
        noise = self.rng.normal(0.0, scale, size=3)
        gripper = float(np.clip(gripper + self.rng.normal(0.0, 4.0), 0.0, 100.0))
        return self.act(waypoint, gripper, noise)


class FailingController(ExpertController):
    """Looks competent but fails: grasps beside the cube, closes too early, or drops the cube.

    The mode is drawn per episode: "beside" (grasp point 2.5-4 cm off the cube centre, retried
    forever), "early" (closes at the pre-grasp height, then descends shut) or, for pick_lift,
    "drop" (opens during the lift, then grasps beside the cube).
    """

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        modes = ["beside", "early"] + (["drop"] if self.world.task == "pick_lift" else [])
        self.mode = modes[int(self.rng.integers(len(modes)))]
        angle = self.rng.uniform(0.0, 2.0 * math.pi)
        miss = self.rng.uniform(0.025, 0.04)
        self._miss = np.array([miss * math.cos(angle), miss * math.sin(angle), 0.0])
        self._drop_at = self.rng.uniform(0.01, 0.03)
        self._early_closed = False

    def grasp_point(self) -> np.ndarray:
        point = self.world.cube_position.copy()
        if self.mode == "beside":
            point += self._miss
        return point

    def __call__(self, obs: dict, info: dict) -> np.ndarray:
        world = self.world
        if self.mode == "early":
            above = world.cube_position + np.array([0.0, 0.0, HOVER_HEIGHT])
            if not self._early_closed and np.linalg.norm(above - world.tool_position) < 0.01:
                self._early_closed = True
            if self._early_closed:
                return self.act(world.cube_position, GRIPPER_CLOSED)
        if self.mode == "drop" and world.held and world.lift > self._drop_at:
            self.mode = "beside"
            return self.act(world.tool_position, GRIPPER_OPEN)
        return super().__call__(obs, info)


CONTROLLERS: dict[str, type[ExpertController]] = {
    "expert": ExpertController,
    "hesitant": HesitantController,
    "noisy": NoisyController,
    "failing": FailingController,
}


def make_controller(name: str, env: SO101Env, seed: int | None = None) -> ExpertController:
    """Controller by registry name ("expert", "hesitant", "noisy", "failing")."""
    try:
        return CONTROLLERS[name](env, seed)
    except KeyError:
        raise ValueError(
            f"unknown controller {name!r}; expected one of {sorted(CONTROLLERS)}"
        ) from None


class Operator:
    """A simulated human supervising a policy; takes over with expert actions when it drifts.

    Drift (while the policy acts): progress fell ``drop_margin`` below its best (e.g. the cube
    slipped), no new best progress for ``stall_steps``, or (cube not held) the tool moved away
    from the cube for ``patience`` consecutive steps. The operator then acts (expert) until
    recovered: progress ``k * recover_margin`` above the best reached before the drift, k being
    the episode's takeover count (a policy that keeps failing gets taken over for longer),
    never in the middle of a grasp and after at least ``min_takeover`` steps; then it hands
    back.

    ``__call__(obs, info) -> (action, is_intervention)``; it also sets ``env.is_intervention``
    so the env's next ``info["is_intervention"]`` reports it. Counters: ``steps``,
    ``intervention_steps``, ``takeovers``, ``intervention_rate`` (since the last reset).
    ``reset(seed)`` also resets the expert and, if it has ``reset``, the wrapped policy.
    """

    def __init__(
        self,
        env: SO101Env,
        policy: Policy,
        seed: int | None = None,
        *,
        patience: int = 3,
        stall_steps: int = 20,
        drop_margin: float = 0.1,
        recover_margin: float = 0.05,
        min_takeover: int = 5,
    ):
        self.env = env.unwrapped
        self.world = self.env.world
        self.policy = policy
        self.expert = ExpertController(env)
        self.patience = patience
        self.stall_steps = stall_steps
        self.drop_margin = drop_margin
        self.recover_margin = recover_margin
        self.min_takeover = min_takeover
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset(seed)
        if hasattr(self.policy, "reset"):
            self.policy.reset(seed)
        self.steps = 0
        self.intervention_steps = 0
        self.takeovers = 0
        self.active = False
        self._best = -1.0
        self._since_best = 0
        self._away_steps = 0
        self._last_distance: float | None = None
        self._reference = 0.0
        self._takeover_steps = 0

    @property
    def intervention_rate(self) -> float:
        return self.intervention_steps / self.steps if self.steps else 0.0

    def __call__(self, obs: dict, info: dict) -> tuple[np.ndarray, bool]:
        progress = float(info["progress"])
        distance = self.world.grasp_distance
        moving_away = self._last_distance is not None and distance > self._last_distance + 1e-4
        self._away_steps = self._away_steps + 1 if moving_away else 0
        self._last_distance = distance
        if progress > self._best + 1e-6:
            self._best, self._since_best = progress, 0
        else:
            self._since_best += 1

        if self.active and self._recovered(progress):
            self.active = False
            self._best, self._since_best, self._away_steps = progress, 0, 0
        elif not self.active and self._drifting(progress):
            self.active = True
            self.takeovers += 1
            self._takeover_steps = 0
            self._reference = self._best
            self.expert.resume()

        self.steps += 1
        if self.active:
            self._takeover_steps += 1
            self.intervention_steps += 1
            action = self.expert(obs, info)
        else:
            action = self.policy(obs, info)
        self.env.is_intervention = self.active
        return action, self.active

    def _drifting(self, progress: float) -> bool:
        if progress < self._best - self.drop_margin or self._since_best >= self.stall_steps:
            return True
        return not self.world.held and self._away_steps >= self.patience

    def _recovered(self, progress: float) -> bool:
        if self.expert.closing or self._takeover_steps < self.min_takeover:
            return False
        # Each repeated takeover in an episode asks for more before handing back.
        return progress >= min(self._reference + self.recover_margin * self.takeovers, 1.0)


def run_episode(
    env: SO101Env,
    policy: Policy | Operator,
    seed: int | None = None,
    on_observation: Callable[[dict], Any] | None = None,
) -> dict[str, Any]:
    """Run one episode until it succeeds, terminates or is truncated (the one episode loop:
    scripted statistics, eval-policy). `policy(obs, info)` returns an action or (action,
    is_intervention); its `reset(seed)`, if any, runs after the env's. `on_observation` sees
    every observation, the first included. Returns success (info["success"] at any step before
    truncation), length (steps taken), the progress trace and the intervention count."""
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset(seed)
    if on_observation is not None:
        on_observation(obs)
    progress = [info.get("progress")]
    steps = interventions = 0
    success = bool(info.get("success"))
    while not success:
        out = policy(obs, info)
        action, is_intervention = out if isinstance(out, tuple) else (out, False)
        interventions += bool(is_intervention)
        obs, _reward, terminated, truncated, info = env.step(action)
        steps += 1
        if on_observation is not None:
            on_observation(obs)
        progress.append(info.get("progress"))
        success = bool(info.get("success"))
        if terminated or truncated:
            break
    return {
        "success": success,
        "length": steps,
        "progress": progress,
        "intervention_steps": interventions,
    }
