"""HIL-SERL collectors: each owns a robot (simulated or real) and an operator; feeds the learner.

A `Collector` loops: at each episode boundary it asks the learner for the newest weights and an
episode seed (`HilserlLearner.sync`: weights are picked up only there, never mid-episode, and
the learner may ask it to wait when it lags), rolls one episode out, and sends it to the
learner as one object through the object store (`HilserlLearner.add_episode`), and to the
recorder when the run records. It stops when the learner says the run has its steps.

Where the episode comes from: `SimRollout` (`actors.hilserl.sim_rollout`: the simulator and
the simulated operator) or `RobotRollout` (`actors.hilserl.robot_rollout`: the arm and camera
actors, the leader-arm takeover rule; an emulated SO-101 or a real one).

Observations are kept as they will be replayed (`pipelines.rl.frames`): the joints, and either
the camera frames (uint8; the `drqv2` encoder, or recording) or a frozen encoder's features
(float16), computed here, once per frame: the policy needs them to act anyway.
"""

from __future__ import annotations

import os
import time

import numpy as np
import ray
import torch

from actors.hilserl.config import CollectorConfig, EpisodeSpec, HilserlRobotConfig
from actors.hilserl.reward import RewardSource
from actors.hilserl.robot_rollout import RobotRollout
from actors.hilserl.sim_rollout import SimRollout
from actors.priority import at_normal_priority, normal_priority
from pipelines.rl.agent import AgentPolicy
from pipelines.rl.config import AgentConfig
from pipelines.rl.features import frozen_from_export
from pipelines.rl.replay import Episode

RECORDS_IN_FLIGHT = 2  # a collector's episodes sent to the recorder and not yet written
RECORD_TIMEOUT_S = 600.0  # the longest the recorder may take over one episode


class RecordQueue:
    """A collector's episodes on their way to the recorder: at most `limit` in flight, so a
    slow recorder slows the collector down (back-pressure) instead of piling episodes up in
    its mailbox, pinned in the object store; a recording's failure is raised here, and
    `flush` waits for every one (a collector's `run` returns once its episodes are written)."""

    def __init__(self, recorder, limit: int = RECORDS_IN_FLIGHT, timeout_s=RECORD_TIMEOUT_S):
        self.recorder = recorder
        self.limit = max(1, int(limit))
        self.timeout_s = timeout_s
        self.pending: list = []

    def send(self, ref) -> None:
        self._wait_until(self.limit - 1)
        self.pending.append(self.recorder.record.remote([ref]))

    def flush(self) -> None:
        self._wait_until(0)

    def _wait_until(self, most: int) -> None:
        while len(self.pending) > most:
            done, rest = ray.wait(self.pending, num_returns=1, timeout=self.timeout_s)
            if not done:
                raise RuntimeError(
                    f"the recorder wrote no episode in {self.timeout_s:g} s "
                    f"({len(self.pending)} of this collector's waiting); the recording cannot "
                    "go on"
                )
            self.pending = rest
            try:
                ray.get(done)
            except ray.exceptions.RayError as e:
                why = " ".join(str(getattr(e, "cause", None) or e).split())[-300:]
                raise RuntimeError(f"the recorder failed: {why}") from None


class Collector:
    """The collector loop around a rollout (module docstring); also a Ray actor."""

    def __init__(
        self,
        index: int,
        learner,
        cfg: CollectorConfig,
        spec: EpisodeSpec,
        agent: AgentConfig,
        robot: HilserlRobotConfig | None = None,
        recorder=None,
        seed: int = 0,
    ):
        torch.set_num_threads(1)
        self.index = index
        self.learner = learner
        self.recorder = recorder
        self.records = RecordQueue(recorder) if recorder is not None else None
        self.cfg = cfg
        self.spec = spec
        self.robot = robot or HilserlRobotConfig()
        self.policy = AgentPolicy(agent)
        encoder = None
        if agent.encoder == "frozen":  # from the learner: restarts need no big args
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
        if self.robot.kind == "sim":
            return SimRollout(self.cfg, self.spec, self._encoder, self._reward)
        seed = self._seed * 1000 + self.index
        return RobotRollout(self.cfg, self.spec, self.robot, self._encoder, self._reward, seed=seed)

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> dict:
        return {"index": self.index, "episodes": self.episodes, "pid": os.getpid()}

    def run(self) -> int:
        """Collect until the learner has its steps; returns the episodes collected here."""
        normal_priority()  # this loop's thread too (actors.priority)
        version = -1
        while True:
            answer = ray.get(self.learner.sync.remote(self.index, version))
            if answer["stop"]:
                if self.records is not None:
                    self.records.flush()  # this collector's episodes written, or an error
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
                if self.robot.kind == "sim":
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
            if self.records is not None:
                self.records.send(ref)  # waits while RECORDS_IN_FLIGHT are being written
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
        self.rollout.close()


def collector_actor(max_restarts: int = 3, **options):
    """`Collector` as a Ray actor that Ray restarts (and whose `run` it retries) if it dies.

    Threaded (4), so that `pid`, `ping` and `close` answer while `run` loops."""
    return ray.remote(
        max_restarts=max_restarts, max_task_retries=max_restarts, max_concurrency=4, **options
    )(at_normal_priority(Collector))
