"""Collection with critical states (seed 000): responders propose, a selector picks, an admin
approves, a rejection is undone and another candidate is drawn.

* **Critical states** (`CriticalRule`): `grasp` (the tool enters the grasp region: within
  `radius` horizontally of the cube and at most `height` above its centre, having been outside
  it at the previous state) and/or `every:K` (every K-th environment step). The rule is judged
  once per new state; resampling after an undo happens at the same state without judging again.
* **Responders** propose one action each at a critical state, through one small interface
  (`Responder`): `reset(seed)` at an episode's start and `propose(observation, info) -> joint
  targets` at each critical state. In the simulator they are the scripted controllers of graded
  quality (`ControllerResponder`, `pipelines.simulator.controllers`) and any policy with `reset()` /
  `act(obs)` (`PolicyResponder`: a trained checkpoint, `pipelines.evaluation`). On a real
  or emulated arm they are candidates submitted through the API: `APIResponder` wraps any
  `propose(observation) -> action` callable (a teleoperation queue, a remote planner, an HTTP
  handler); on the emulated arm the scripted controllers are that API's caller, computing
  their candidates from the workcell's coupled simulator state. A controller is asked fresh at
  each critical state (its transient motion state is forgotten: `resume()`), since it did not
  drive the arm in between. Candidates are kept as the joint targets they command, which is
  what the dataset's `action` column holds.
* **The driver** acts on the frames that are not critical (propensity 1.0, approval `none`).
* **The admin** reviews each executed critical action (`review(attempt) -> bool`, `Attempt`:
  the state before, the action, the observation and info after). `ProgressAdmin` approves
  when the task progress after the action is at least `threshold` above the progress before it
  (a success is always approved): the simulator's, or on the emulated arm its coupled
  simulator's. `APIAdmin` asks any `approve(attempt) -> bool` callable, `KeyboardAdmin` a
  person at the terminal (a real arm).
* **Undo** restores the state before the action: `SO101Env.set_state` in the simulator (exact),
  `return_to_pose` on a real or emulated arm (`actors.collection.workcell.ArmWorkcell.set_state`:
  the
  `FollowerArm` moves back to the recorded joint pose in its step-limited moves; the cube is
  not put back, on a real arm nor, deliberately, on the emulated one). After k rejections at
  a state the selector draws among the n - k candidates not yet executed (`ActionSelector`,
  exact conditional propensities). When all n were rejected the state stays restored and the
  driver acts from it.

Every frame the episode records is an attempt: a rejected action is recorded (approval
`rejected`, next.reward 0) and the next frame shows the same restored state again, with the
resampled action; `state_id` (the log's) names the state, so the two frames share it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipelines.selection.selector import ActionSelector, SelectorError
from pipelines.simulator.controllers import make_controller

CRITICAL_RULES = ("grasp", "every:K", "grasp+every:K")


@dataclass(frozen=True)
class CriticalRule:
    """Which states are critical (module docstring); `parse("grasp+every:10")`."""

    grasp: bool = True
    every: int | None = None
    radius: float = 0.03  # m, horizontal distance from the cube centre
    height: float = 0.08  # m, above the cube centre

    @classmethod
    def parse(cls, text: str) -> CriticalRule:
        grasp, every = False, None
        for part in text.strip().split("+"):
            part = part.strip()
            if part == "grasp":
                grasp = True
            elif part.startswith("every:"):
                try:
                    every = int(part.removeprefix("every:"))
                except ValueError:
                    every = 0
                if every < 1:
                    raise SelectorError(f"--critical {text!r}: every:K needs an integer K >= 1")
            else:
                raise SelectorError(
                    f"--critical {text!r}: expected one of {', '.join(CRITICAL_RULES)}"
                )
        return cls(grasp=grasp, every=every)

    def in_grasp_region(self, world) -> bool:
        tool, cube = world.tool_position, world.cube_position
        horizontal = float(np.hypot(*(tool[:2] - cube[:2])))
        above = float(tool[2] - cube[2])
        return horizontal <= self.radius and -0.01 <= above <= self.height

    def is_critical(self, step: int, in_region: bool, was_in_region: bool) -> bool:
        if self.every is not None and step % self.every == 0:
            return True
        return self.grasp and in_region and not was_in_region


@dataclass(frozen=True)
class Attempt:
    """One executed critical action, as the admin reviews it."""

    state_id: int
    observation: dict  # before the action
    info: dict  # before the action (progress: NaN on a real arm)
    action: np.ndarray
    candidates: np.ndarray  # n x action_dim
    selected: int
    already_executed: tuple[int, ...]  # candidates rejected at this state before this one
    observation_after: dict
    info_after: dict


@dataclass(frozen=True)
class ProgressAdmin:
    """Simulated administrator: approve when progress after - before >= threshold (or success)."""

    threshold: float = 0.002

    def approves(self, progress_before: float, info_after: dict) -> bool:
        if info_after.get("success"):
            return True
        return float(info_after["progress"]) - float(progress_before) >= self.threshold

    def review(self, attempt: Attempt) -> bool:
        return self.approves(attempt.info["progress"], attempt.info_after)


@dataclass(frozen=True)
class APIAdmin:
    """The admin as an API: `approve(attempt) -> bool` decides (a UI, a service, a test)."""

    approve: Callable[[Attempt], bool]

    def review(self, attempt: Attempt) -> bool:
        return bool(self.approve(attempt))


class KeyboardAdmin:
    """A person at the terminal approves (y) or rejects (n) each critical action."""

    def __init__(self, stdin=None, stdout=None):
        self.stdin, self.stdout = stdin, stdout

    def review(self, attempt: Attempt) -> bool:
        stdin, stdout = self.stdin or sys.stdin, self.stdout or sys.stderr
        while True:
            stdout.write(
                f"state {attempt.state_id}: candidate {attempt.selected} of "
                f"{len(attempt.candidates)} executed; approve? [y/n] "
            )
            stdout.flush()
            answer = stdin.readline()
            if not answer:
                raise RuntimeError("keyboard admin: the input ended")
            if answer.strip().lower() in ("y", "yes", "n", "no"):
                return answer.strip().lower().startswith("y")


class Responder(Protocol):
    """What the episode loop asks at a critical state (module docstring)."""

    name: str

    def reset(self, seed: int | None) -> None: ...

    def propose(self, obs: dict, info: dict) -> np.ndarray: ...


class APIResponder:
    """Candidates submitted through an API: `propose(observation) -> joint targets`."""

    def __init__(self, name: str, propose: Callable[[dict], np.ndarray]):
        self.name = name
        self._propose = propose

    def reset(self, seed: int | None) -> None:
        pass

    def propose(self, obs: dict, info: dict) -> np.ndarray:
        return np.asarray(self._propose(obs), dtype=np.float32)


class ControllerResponder:
    """A scripted controller as a responder (asked fresh at each critical state)."""

    def __init__(self, name: str, env, seed: int | None):
        self.name = name
        self.controller = make_controller(name, env, seed=seed)
        self.env = env.unwrapped

    def reset(self, seed: int | None) -> None:
        self.controller.reset(seed)

    def propose(self, obs: dict, info: dict) -> np.ndarray:
        self.controller.resume()
        return self.env.joint_targets(self.controller(obs, info)).astype(np.float32)


class PolicyResponder:
    """Any policy with `reset()` / `act(obs)` (a trained checkpoint) as a responder."""

    def __init__(self, name: str, policy, env):
        self.name = name
        self.policy = policy
        self.env = env.unwrapped

    def reset(self, seed: int | None) -> None:
        self.policy.reset()

    def propose(self, obs: dict, info: dict) -> np.ndarray:
        return self.env.joint_targets(self.policy.act(obs)).astype(np.float32)


@dataclass
class Frame:
    """One recorded attempt (see the module docstring)."""

    observation: dict
    action: np.ndarray
    reward: float
    progress: float
    stage: int
    stage_scores: tuple
    shown_success: bool
    is_critical: bool
    approval_status: str  # approved / rejected / none
    propensity: float
    candidates: np.ndarray  # n x action_dim (the executed action repeated on plain frames)
    selected_candidate: int  # -1 on plain frames
    state_id: int
    log: dict = field(default_factory=dict)  # selection metadata for the propensity log


@dataclass
class CollectionOutcome:
    frames: list[Frame]
    success: bool
    final_progress: float
    critical_states: int
    rejections: int


def run_collection_episode(
    env,
    driver: Callable[[dict, dict], np.ndarray],
    responders: Sequence,
    selector: ActionSelector,
    rule: CriticalRule,
    admin,
    seed: int,
    stage_positions: Callable | None = None,
    max_frames: int | None = None,
) -> CollectionOutcome:
    """Roll one episode out with critical states (module docstring).

    `env`: an `SO101Env` or an `actors.collection.workcell.ArmWorkcell` (the same interface; a real
    arm's
    has no `world`: no grasp region, no stage scores). `driver(obs, info)` acts on plain frames
    (an env action); `responders` are `Responder`s; `admin` has `review(attempt) -> bool`.
    `stage_positions(world)` gives the frame's per-stage positions (for `stage_progress_gt`);
    the world's scores otherwise.
    """
    obs, info = env.reset(seed=seed)
    world = env.unwrapped.world  # None on a real arm
    for r in responders:
        r.reset(seed)
    if hasattr(driver, "reset"):
        driver.reset(seed)
    n = len(responders)
    frames: list[Frame] = []
    state_id, next_id = 0, 1
    was_in_region = False
    skip_critical = False  # every candidate was rejected at this state: the driver acts
    critical_states = rejections = 0
    limit = max_frames or 10 * env.unwrapped.max_episode_steps
    done = terminated = False

    def positions():
        if world is None:
            return ()
        return stage_positions(world) if stage_positions else world.stage_scores()

    while not done and len(frames) < limit:
        in_region = world is not None and rule.in_grasp_region(world)
        step = env.unwrapped.elapsed_steps
        critical = n > 0 and not skip_critical and rule.is_critical(step, in_region, was_in_region)
        was_in_region = in_region
        skip_critical = False
        common = {
            "observation": obs,
            "progress": float(info["progress"]),
            "stage": int(info["stage"]),
            "stage_scores": positions(),
            "shown_success": bool(world.success() if world is not None else info["success"]),
            "state_id": state_id,
        }
        if not critical:
            action = env.unwrapped.joint_targets(driver(obs, info)).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(
                Frame(
                    **common,
                    action=action,
                    reward=float(reward),
                    is_critical=False,
                    approval_status="none",
                    propensity=1.0,
                    candidates=np.repeat(action[None], max(n, 1), axis=0),
                    selected_candidate=-1,
                    log={
                        "selector_mode": selector.mode,
                        "epsilon": selector.epsilon if selector.mode == "epsilon_greedy" else None,
                        "resampled": False,
                        "num_candidate_actions": 1,
                        "num_already_executed": 0,
                        "candidate_propensities": [1.0],
                    },
                )
            )
            state_id, next_id = next_id, next_id + 1
            done = terminated or truncated
            continue

        critical_states += 1
        candidates = np.stack([r.propose(obs, info) for r in responders]).astype(np.float32)
        saved = env.unwrapped.get_state()
        before_obs, before_info = obs, info
        excluded: list[int] = []
        while True:
            sel = selector.select(candidates, before_obs, excluded)
            obs, reward, terminated, truncated, info = env.step(sel.action)
            approved = admin.review(
                Attempt(
                    state_id,
                    before_obs,
                    before_info,
                    sel.action,
                    candidates,
                    sel.index,
                    tuple(excluded),
                    obs,
                    info,
                )
            )
            frames.append(
                Frame(
                    **common,
                    action=sel.action,
                    reward=float(reward) if approved else 0.0,
                    is_critical=True,
                    approval_status="approved" if approved else "rejected",
                    propensity=sel.propensity,
                    candidates=candidates,
                    selected_candidate=sel.index,
                    log={**sel.metadata, "selected_candidate": sel.index},
                )
            )
            if approved:
                state_id, next_id = next_id, next_id + 1
                done = terminated or truncated
                break
            rejections += 1
            excluded.append(sel.index)
            obs, info = env.unwrapped.set_state(saved)  # undo
            terminated = False
            if len(excluded) == n:
                skip_critical = True
                break
    success = bool(terminated and info["success"])
    return CollectionOutcome(frames, success, float(info["progress"]), critical_states, rejections)


def return_to_pose(
    arm,
    joints: np.ndarray,
    *,
    tolerance: float = 1.0,
    timeout_s: float = 10.0,
    period_s: float = 0.05,
) -> np.ndarray:
    """Undo on a real arm: command `FollowerArm` `arm` back to the recorded joint pose.

    The follower moves in its own step-limited commands (`max_step` per command); this repeats
    the goal until every joint reads within `tolerance` (degrees, gripper units) of it, and
    returns the pose reached. A pose not reached within `timeout_s` (an obstacle, a stalled
    servo) is a RuntimeError naming the farthest joint: the state could not be restored, so
    the collection must not go on as if it had been.
    """
    goal = np.asarray(joints, dtype=np.float64)
    deadline = time.monotonic() + timeout_s
    while True:
        now = np.asarray(arm.read(), dtype=np.float64)
        error = np.abs(now - goal)
        if float(error.max()) <= tolerance:
            return now.astype(np.float32)
        if time.monotonic() > deadline:
            worst = int(np.argmax(error))
            raise RuntimeError(
                f"undo: joint {worst} is {error[worst]:.1f} from the recorded pose after "
                f"{timeout_s:.0f} s; the state was not restored"
            )
        arm.command(goal)
        time.sleep(period_s)
