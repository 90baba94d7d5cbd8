"""HIL-SERL collectors: each owns a robot (simulated or real) and an operator; feeds the learner.

A `Collector` loops: at each episode boundary it asks the learner for the newest weights and an
episode seed (`Learner.sync`: weights are picked up only there, never mid-episode, and the
learner may ask it to wait when it lags), rolls one episode out, and sends it to the learner
as one object through the object store (`Learner.add_episode`), and to the recorder when the
run records. It stops when the learner says the run has its steps.

Where the episode comes from:

* `SimRollout`: the Gymnasium `SO101Env` in `ee_delta` mode behind the normalizing wrapper
  (`pipelines.simulator.wrappers`), the simulated `Operator` watching the policy and taking over
  with
  expert actions when it drifts (then handing back). The reward is the simulator's sparse one
  (1 on success, which ends the episode) or the served classifier's (`RewardSource`): then the
  classifier alone decides the reward and, with `terminate_on_success`, the end; the
  simulator's success is kept for the metrics only.
* `RobotRollout` (`actors.hilserl.robot_rollout`): the `FollowerArm` / `LeaderArm` / camera actors,
  the
  leader-arm takeover rule; an emulated SO-101 or a real one.

Observations are kept as they will be replayed: the joints, and either the camera frames
(uint8; the `drqv2` encoder, or recording) or a frozen encoder's features (float16), computed
here, once per frame: the policy needs them to act anyway.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipelines.rl.replay import Episode

STATE_KEY = "observation.state"
FEATURES_KEY = "features"


@dataclass
class CollectorConfig:
    """What a collector needs to know (sent to every collector actor)."""

    task: str = "reach_grasp"
    fps: int = 10
    image_size: int = 64
    cameras: list[str] = field(
        default_factory=lambda: ["observation.images.front", "observation.images.wrist"]
    )
    frame_stack: int = 1
    keep_images: bool = True  # ship camera frames (drqv2 encoder, or recording)
    operator: bool = True  # the simulated operator supervises the policy
    random_steps: int = 500  # uniform random actions for the run's first env steps
    reward: str = "sim"  # sim | classifier
    reward_app: str = "reward"  # the Serve application scoring frames (--reward classifier)
    reward_url: str | None = None  # or its HTTP endpoint
    terminate_on_success: bool = True
    success_frames: int = 1  # classifier: consecutive frames it must call a success
    max_episode_steps: int | None = None
    robot: str = "sim"  # sim | emulated | real
    follower_port: str | None = None
    leader_port: str | None = None
    follower_id: str | None = None
    leader_id: str | None = None
    calibration_dir: str | None = None
    real_cameras: dict = field(default_factory=dict)  # key -> OpenCV source (real arm)


class FrameStack:
    """The last `k` observation frames (the first one repeated at an episode's start)."""

    def __init__(self, k: int):
        self.k = k
        self.frames: deque = deque(maxlen=k)

    def reset(self, frame: dict) -> None:
        self.frames.clear()
        for _ in range(self.k):
            self.frames.append(frame)

    def push(self, frame: dict) -> None:
        self.frames.append(frame)

    def stacked(self) -> dict[str, np.ndarray]:
        return {key: np.stack([f[key] for f in self.frames]) for key in self.frames[0]}


class SuccessStreak:
    """A success only after `frames` consecutive frames the classifier called one.

    A policy that meets a learned reward searches for the frames the classifier gets wrong: in
    the simulator, a single frame of the closing gripper with the cube, far below, centered
    between its fingers in the wrist camera, where one frame later the classifier says no
    again. Asking for the verdict on 2-3 frames in a row (`--success-frames`) takes such
    one-frame flickers away; a true grasp holds for as long as the cube stays up.
    """

    def __init__(self, frames: int = 1):
        self.frames = int(frames)
        self.run = 0

    def reset(self) -> None:
        self.run = 0

    def update(self, success: bool) -> bool:
        self.run = self.run + 1 if success else 0
        return self.run >= self.frames


class RewardSource:
    """The served classifier's reward for a frame: 1.0 when it says success (on the last
    `success_frames` frames in a row, `SuccessStreak`), else 0.0; `reset()` at each episode.

    Through the Serve application's handle (`reward_app`) or its HTTP endpoint (`reward_url`),
    with the client's retries; only the cameras the classifier takes are sent.
    """

    def __init__(self, cfg: CollectorConfig):
        from serving.client import HandleRewardClient, HTTPRewardClient

        # patient: a busy endpoint (or a replica being replaced) answers late, not wrongly
        patience = {"timeout_s": 30.0, "deadline_s": 120.0}
        if cfg.reward_url:
            self.client = HTTPRewardClient(cfg.reward_url, **patience)
            info = self.client.info()
        else:
            self.client = HandleRewardClient(app_name=cfg.reward_app, **patience)
            info = self.client.handle.info.remote().result(timeout_s=60)
        self.cameras = list(info["cameras"])
        self.streak = SuccessStreak(cfg.success_frames)

    def reset(self) -> None:
        self.streak.reset()

    def __call__(self, obs: dict) -> float:
        answer = self.client.score({k: obs[k] for k in self.cameras})
        return 1.0 if self.streak.update(bool(answer["success"])) else 0.0


def replay_frame(obs: dict, cameras: list[str], encoder=None) -> dict:
    """The frame the replay buffer keeps of an observation: the joints, and the frozen
    encoder's features (float16) or, without one, the camera images."""
    out = {STATE_KEY: np.asarray(obs[STATE_KEY], dtype=np.float32)}
    if encoder is not None:
        feats = encoder.features({k: obs[k] for k in encoder.cameras})[0]
        out[FEATURES_KEY] = feats.astype(np.float16)
    else:
        for key in cameras:
            out[key] = obs[key]
    return out


class EpisodeBuilder:
    """Accumulates one episode's frames in replay form."""

    def __init__(self, cfg: CollectorConfig, encoder):
        self.cfg = cfg
        self.encoder = encoder
        self.history = FrameStack(cfg.frame_stack)
        self.frames: list[dict] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.interventions: list[bool] = []
        self.images: dict[str, list[np.ndarray]] = {k: [] for k in cfg.cameras}

    def observe(self, obs: dict, first: bool = False) -> dict:
        frame = replay_frame(obs, self.cfg.cameras, self.encoder)
        self.frames.append(frame)
        if self.cfg.keep_images or self.encoder is None:
            for key in self.cfg.cameras:
                self.images[key].append(np.asarray(obs[key]))
        if first:
            self.history.reset(frame)
        else:
            self.history.push(frame)
        return self.history.stacked()

    def step(self, action: np.ndarray, reward: float, intervention: bool) -> None:
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.rewards.append(float(reward))
        self.interventions.append(bool(intervention))

    def build(self, terminated: bool, info: dict) -> Episode:
        t = len(self.actions)
        obs = {key: np.stack([f[key] for f in self.frames]) for key in self.frames[0]}
        if self.cfg.keep_images or self.encoder is None:
            for key in self.cfg.cameras:
                obs[key] = np.stack(self.images[key])
        return Episode(
            obs=obs,
            action=np.stack(self.actions) if t else np.zeros((0, 4), np.float32),
            reward=np.asarray(self.rewards, dtype=np.float32),
            terminated=bool(terminated),
            intervention=np.asarray(self.interventions, dtype=bool),
            demo=np.zeros(t, dtype=bool),
            info=info,
        )


class SimRollout:
    """Episodes in the simulator, supervised by the simulated operator (module docstring)."""

    def __init__(self, cfg: CollectorConfig, encoder=None, reward=None):
        from pipelines.simulator import SO101Env
        from pipelines.simulator.controllers import Operator
        from pipelines.simulator.wrappers import NormalizedEEDelta

        self.cfg = cfg
        self.encoder = encoder
        base = SO101Env(
            cfg.task,
            fps=cfg.fps,
            image_size=cfg.image_size,
            action_mode="ee_delta",
            max_episode_steps=cfg.max_episode_steps,
        )
        self.env = NormalizedEEDelta(base)
        self.base = base
        self._agent_action: np.ndarray | None = None
        self._act = None
        self.operator = Operator(base, self._policy_raw) if cfg.operator else None
        self.reward = reward

    def _policy_raw(self, obs, info) -> np.ndarray:
        self._agent_action = self._act()
        return self.env.action(self._agent_action)

    def episode(self, act, seed: int) -> Episode:
        """One episode; `act()` gives the policy's normalized action for the current frame."""
        cfg = self.cfg
        builder = EpisodeBuilder(cfg, self.encoder)
        obs, info = self.env.reset(seed=seed)
        if hasattr(self.reward, "reset"):
            self.reward.reset()
        if self.operator is not None:
            self.operator.reset(seed)
        stacked = [builder.observe(obs, first=True)]
        self._act = lambda: act(stacked[0])
        success_seen = bool(info["success"])
        terminated = truncated = False
        started = time.monotonic()
        while not (terminated or truncated):
            if self.operator is not None:
                raw, intervening = self.operator(obs, info)
                stored = self.env.normalize(raw) if intervening else self._agent_action
            else:
                stored = self._act()
                raw, intervening = self.env.action(stored), False
            obs, env_reward, env_terminated, truncated, info = self.base.step(raw)
            success_seen |= bool(info["success"])
            if self.reward is None:
                reward, terminated = env_reward, env_terminated
            else:
                reward = self.reward(obs)
                terminated = bool(reward > 0 and cfg.terminate_on_success)
                if not terminated and self.base.elapsed_steps >= self.base.max_episode_steps:
                    truncated = True
            builder.step(stored, reward, intervening)
            stacked[0] = builder.observe(obs)
        steps = len(builder.actions)
        interventions = int(np.sum(builder.interventions))
        info_out = {
            "seed": seed,
            "success": success_seen,
            "length": steps,
            "return": float(np.sum(builder.rewards)),
            "intervention_steps": interventions,
            "takeovers": self.operator.takeovers if self.operator is not None else 0,
            "seconds": time.monotonic() - started,
        }
        return builder.build(terminated, info_out)


class Collector:
    """The collector loop around a rollout (module docstring); also a Ray actor."""

    def __init__(
        self,
        index: int,
        learner,
        cfg: CollectorConfig,
        agent_config: dict,
        recorder=None,
        seed: int = 0,
    ):
        import torch

        from pipelines.rl.agent import AgentConfig, AgentPolicy

        torch.set_num_threads(1)
        self.index = index
        self.learner = learner
        self.recorder = recorder
        self.cfg = cfg
        self.policy = AgentPolicy(AgentConfig(**agent_config))
        encoder = None
        if agent_config["encoder"] == "frozen":  # from the learner: restarts need no big args
            import ray

            from pipelines.rl.features import frozen_from_export

            encoder = frozen_from_export(ray.get(learner.frozen_encoder.remote()))
        self._encoder = encoder
        self._reward = RewardSource(cfg) if cfg.reward == "classifier" else None
        self._seed = seed
        self.rollout = self._rollout()
        self.rng = np.random.default_rng([seed, index, os.getpid()])
        self.episodes = 0
        self.robot_faults = 0
        self.started = time.time()

    def _rollout(self):
        if self.cfg.robot == "sim":
            return SimRollout(self.cfg, self._encoder, self._reward)
        from actors.hilserl.robot_rollout import RobotRollout

        return RobotRollout(
            self.cfg, self._encoder, self._reward, seed=self._seed * 1000 + self.index
        )

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> dict:
        return {"index": self.index, "episodes": self.episodes, "pid": os.getpid()}

    def run(self) -> int:
        """Collect until the learner has its steps; returns the episodes collected here."""
        import ray

        from actors.priority import normal_priority

        normal_priority()  # this loop's thread too (actors.priority)
        version = -1
        while True:
            answer = ray.get(self.learner.sync.remote(self.index, version))
            if answer["stop"]:
                return self.episodes
            if answer["wait"]:
                time.sleep(answer["wait"])
                continue
            if answer["weights"] is not None:
                weights = answer["weights"][0]
                state = ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights
                self.policy.load(state, answer["version"])
                version = answer["version"]
            try:
                episode = self.collect(answer["seed"], answer["env_steps"], answer["random"])
            except Exception as e:
                if self.cfg.robot == "sim":
                    raise
                # a robot fault (a bus that stopped answering: the follower is torque-off by
                # now): drop the episode, connect the arms again, go on; give up after 3 in a row
                self.robot_faults += 1
                print(f"collector {self.index}: robot fault, episode dropped: {e}", flush=True)
                if self.robot_faults > 3:
                    raise
                self.rollout.close()
                self.rollout = self._rollout()
                continue
            self.robot_faults = 0
            ref = ray.put(episode)
            if self.recorder is not None:
                self.recorder.record.remote([ref])
            ray.get(self.learner.add_episode.remote([ref]))
            self.episodes += 1

    def collect(self, seed: int, env_step: int, random_actions: bool) -> Episode:
        rng = self.rng
        if random_actions or self.policy.version < 0:

            def act(_obs):
                return rng.uniform(-1.0, 1.0, 4).astype(np.float32)
        else:

            def act(obs):
                return self.policy.act(obs, env_step, explore=True, rng=rng)

        cpu = time.process_time()
        episode = self.rollout.episode(act, seed)
        episode.info["cpu_s"] = time.process_time() - cpu
        episode.info.update(
            collector=self.index, version=self.policy.version, random=bool(random_actions)
        )
        return episode

    def close(self) -> None:
        close = getattr(self.rollout, "close", None)
        if close is not None:
            close()


def collector_actor(max_restarts: int = 3, **options):
    """`Collector` as a Ray actor that Ray restarts (and whose `run` it retries) if it dies.

    Threaded (4), so that `pid`, `ping` and `close` answer while `run` loops."""
    import ray

    from actors.priority import at_normal_priority

    return ray.remote(
        max_restarts=max_restarts, max_task_retries=max_restarts, max_concurrency=4, **options
    )(at_normal_priority(Collector))
