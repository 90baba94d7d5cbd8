"""The HIL-SERL learner: one process that owns the replay buffers and the agent, fed by collectors.

**Data.** Collectors send whole episodes through the object store (`add_episode`). Every
transition goes to the online buffer; the intervention transitions (each run of consecutive
intervened steps, with the frame after it as its final observation) also go to the offline
buffer, which the run may seed from a LeRobot dataset first (`pipelines.rl.offline`). A batch
takes `online_ratio` of its samples from the online buffer and the rest from the offline one
(all online while the offline buffer is empty).

**Training** runs on a thread of the learner: a learner step is `utd_ratio` critic updates
and one actor update (`pipelines.rl.agent`), and the Q monitor (`pipelines.rl.monitor`)
watches every one. Steps are paced by the data: after `learning_starts` online transitions the
learner may take `updates_per_step` steps per env step received, no more (it waits for data),
and a collector asking for work while the learner is more than `max_lag` steps behind is told
to wait (`sync`), so that the update-to-data ratio holds whatever the machine's speed;
`updates_per_step = 0` lets the learner run free and collectors never wait.

**The end.** When the run has its env steps, `sync` tells each collector to stop at its next
episode boundary; the episodes they were in the middle of still come in and are trained on
(the learner's step budget follows the env steps received), and `finish` (called once every
collector has stopped) stops training and writes the final checkpoint, so it holds every
episode received.

**Weights** are published every `push_every` learner steps (`ray.put` once, every collector
fetches the same object) and picked up by collectors at episode boundaries, in `sync`, which
also hands out episode seeds and says when the run has its env steps.

**Faults.** A collector that sent nothing for `silent_after_s` is reported (a warning and the
`silent_collectors` metric); the learner carries on with the others. Checkpoints (`checkpoint_*`
in the run folder: agent, optimizers, counters, monitor, and the replay manifests) are written
every `checkpoint_every` env steps and at the end, each as a folder that appears atomically
(written as a temporary folder, fsynced, renamed); the replay buffers' new frames are written
as segment files first. A learner restarted by Ray, or a rerun of the command, resumes from the
newest checkpoint: buffers, weights, optimizer states, step counters. At most
`checkpoint_every` + one episode of env steps received by the learner are lost by a kill, plus
the episode each collector was in the middle of.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import ray
import torch

from actors.hilserl import checkpoints
from actors.hilserl.config import HilserlLearnerConfig
from actors.hilserl.progress import episode_record, window_metrics
from actors.priority import at_normal_priority
from pipelines.rl.agent import DrQV2Agent
from pipelines.rl.config import KIND, AgentConfig
from pipelines.rl.features import frozen_from_export, load_frozen_encoder
from pipelines.rl.monitor import QBoundMonitor
from pipelines.rl.offline import check_offline_dataset, load_offline_episodes
from pipelines.rl.replay import Episode, ReplayBuffer, concat_batches, intervention_runs
from pipelines.runtime.checkpoints import latest_checkpoint, load_state, read_meta
from pipelines.simulator.env import SO101Env

WINDOW = 20  # episodes in the running averages (success, intervention rate, return)


class HilserlLearner:
    """The learner (module docstring). A plain class; `learner_actor()` makes it a Ray actor."""

    def __init__(
        self,
        cfg: HilserlLearnerConfig,
        agent_config: AgentConfig,
        obs_spec: dict,
        run_dir: str,
        run_meta: dict | None = None,
        device: str = "cpu",
        encoder_source: str | None = None,
        start: bool = True,
    ):
        """`run_dir`: where its checkpoints and replay segments go; `run_meta`: the run's
        settings, kept in every checkpoint; `device`: cpu, cuda or auto."""
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_meta = dict(run_meta or {})
        self.agent_config = agent_config
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.agent = DrQV2Agent(self.agent_config, device=device, seed=cfg.seed)
        self.encoder_export: dict | None = None  # the frozen encoder, embedded in checkpoints
        self._encoder_source = encoder_source
        stack = self.agent_config.frame_stack
        a = self.agent_config.action_dim
        self.online = ReplayBuffer(cfg.online_capacity, obs_spec, a, stack)
        self.offline = ReplayBuffer(cfg.offline_capacity, obs_spec, a, stack)
        self.monitor = QBoundMonitor(agent_config.q_bound, patience=cfg.q_alarm_patience)
        self.rng = np.random.default_rng(cfg.seed)
        self.lock = threading.RLock()
        self.new_data = threading.Condition(self.lock)
        # counters (checkpointed)
        self.env_steps = 0
        self.episodes = 0
        self.seeds_issued = 0
        self.version = -1
        self.resumed_from: dict | None = None
        self.episode_log: list[dict] = []
        self.metric_log: list[dict] = []
        # not checkpointed
        self._weights = None
        self._pending: dict[str, list[float]] = {}
        self._warnings: list[str] = []
        self._last_seen: dict[int, float] = {}
        self._silent: set[int] = set()
        self._last_checkpoint_env = 0
        self._last_checkpoint: str | None = None
        self._started = time.monotonic()
        self._updates_at_status = (0, time.monotonic())
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._watch: threading.Thread | None = None
        self.offline_loaded = 0
        resumed = self._resume()
        if not resumed and encoder_source is not None:
            self.encoder_export = load_frozen_encoder(encoder_source).export()
        if not resumed and cfg.offline_dataset:
            self._load_offline()
        self._publish()
        if start:
            self.start()

    # ------------------------------------------------------------------ set-up

    def _load_offline(self) -> None:
        meta = self.run_meta
        cameras = list(meta["cameras"])
        units, calibration = self.cfg.offline_units, self.cfg.offline_calibration
        ds = check_offline_dataset(self.cfg.offline_dataset, cameras, units, calibration)
        encoder = frozen_from_export(self.encoder_export) if self.encoder_export else None
        keep_images = self.agent_config.encoder == "drqv2"
        max_step = float(meta.get("max_ee_step", SO101Env().max_ee_step))
        for episode in load_offline_episodes(
            ds,
            cameras,
            int(meta["image_size"]),
            max_step,
            encoder,
            keep_images,
            units=units,
            calibration=calibration,
        ):
            episode.obs = {k: v for k, v in episode.obs.items() if k in self.online.obs_spec}
            self.offline.add(episode)
            self.offline_loaded += len(episode)

    def _resume(self) -> bool:
        path = latest_checkpoint(self.run_dir, KIND)
        if path is None:
            return False
        meta = read_meta(path, KIND)
        state = load_state(path)
        self.agent.load_state_dict(state["agent"])
        self.encoder_export = state.get("frozen_encoder")
        self.monitor.load(state["monitor"])
        counters = state["counters"]
        self.env_steps = int(counters["env_steps"])
        self.episodes = int(counters["episodes"])
        self.seeds_issued = int(counters["seeds_issued"])
        self.episode_log = list(state.get("episode_log", []))
        self.metric_log = list(state.get("metric_log", []))
        self.rng.bit_generator.state = state["rng"]
        replay = self.run_dir / "replay"
        self.online.load(replay / "online", meta["replay"]["online"])
        self.offline.load(replay / "offline", meta["replay"]["offline"])
        self.offline_loaded = int(counters.get("offline_loaded", 0))
        self._last_checkpoint_env = self.env_steps
        self._last_checkpoint = str(path)
        self.resumed_from = {
            "checkpoint": str(path),
            "env_steps": self.env_steps,
            "learner_steps": self.agent.updates,
            "episodes": self.episodes,
            "online": len(self.online),
            "offline": len(self.offline),
        }
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._train, name="learner", daemon=True)
            self._thread.start()
            self._watch = threading.Thread(target=self._watchdog, name="watch", daemon=True)
            self._watch.start()

    # ------------------------------------------------------------------ pacing

    def target_steps(self, env_steps: int | None = None) -> float:
        """Learner steps the data received so far allows (module docstring)."""
        e = self.env_steps if env_steps is None else env_steps
        if self.cfg.updates_per_step <= 0:
            return float("inf")
        return self.cfg.updates_per_step * max(0, e - self.cfg.learning_starts)

    def _final_steps(self) -> float:
        return self.target_steps(max(self.env_steps, self.cfg.steps))

    def done_collecting(self) -> bool:
        return self.env_steps >= self.cfg.steps

    def _training_done(self) -> bool:
        """The run has its env steps and the steps they allow (free-running: its env steps)."""
        if not self.done_collecting():
            return False
        return self.cfg.updates_per_step <= 0 or self.agent.updates >= self._final_steps()

    # ------------------------------------------------------------------ collectors' calls

    def sync(self, collector: int, version: int) -> dict:
        """Called by a collector at each episode boundary (module docstring)."""
        with self.lock:
            now = time.monotonic()
            self._last_seen.setdefault(collector, now)
            if collector in self._silent:
                self._silent.discard(collector)
                self._warn(f"collector {collector} is back")
            answer = {"stop": self.done_collecting() or self._error is not None, "wait": 0.0}
            if answer["stop"]:
                return answer
            lag = self.target_steps() - self.agent.updates
            if self.cfg.updates_per_step > 0 and lag > self.cfg.max_lag:
                self._last_seen[collector] = now  # waiting is not silence
                answer["wait"] = 0.05
                return answer
            answer.update(
                weights=None if version == self.version else [self._weights],
                version=self.version,
                seed=self.cfg.seed * 1_000_003 + self.seeds_issued,
                env_steps=self.env_steps,
                random=self.env_steps < self.cfg.random_steps,
            )
            self.seeds_issued += 1
            return answer

    def add_episode(self, episodes: list) -> int:
        """Episodes (or object refs of them) from a collector; returns the env steps so far."""
        items = [ray.get(e) if isinstance(e, ray.ObjectRef) else e for e in episodes]
        with self.lock:
            for episode in items:
                self._add(episode)
            self.new_data.notify_all()
            return self.env_steps

    def _add(self, episode: Episode) -> None:
        episode.obs = {k: v for k, v in episode.obs.items() if k in self.online.obs_spec}
        if len(episode) == 0:
            return
        self.online.add(episode)
        for run in intervention_runs(episode):
            self.offline.add(run)
        self.env_steps += len(episode)
        self.episodes += 1
        collector = episode.info.get("collector")
        if collector is not None:
            self._last_seen[int(collector)] = time.monotonic()
            self._silent.discard(int(collector))
        record = episode_record(
            episode,
            episode=self.episodes,
            env_steps=self.env_steps,
            learner_steps=self.agent.updates,
            wall_s=time.monotonic() - self._started,
        )
        self.episode_log.append(record)

    # ------------------------------------------------------------------ training

    def _sample(self) -> dict:
        cfg = self.cfg
        n_online = cfg.batch_size
        if len(self.offline) > 0:
            n_online = int(round(cfg.batch_size * cfg.online_ratio))
        parts = []
        gamma, n = self.agent_config.discount, self.agent_config.nstep
        if n_online > 0:
            parts.append(self.online.sample(n_online, self.rng, n, gamma))
        if cfg.batch_size - n_online > 0:
            parts.append(self.offline.sample(cfg.batch_size - n_online, self.rng, n, gamma))
        batch = parts[0]
        for p in parts[1:]:
            batch = concat_batches(batch, p)
        return batch

    def _ready(self) -> bool:
        return len(self.online) >= self.cfg.learning_starts and self.agent.updates < min(
            self.target_steps(), self._final_steps()
        )

    def step(self) -> dict:
        """One learner step: `utd_ratio` critic updates, one actor update, the monitor, and
        publishing / checkpointing when due. The caller checks that data allows it."""
        with self.lock:
            batches = [self._sample() for _ in range(self.agent_config.utd_ratio)]
            env_step = self.env_steps
        metrics = self.agent.update(batches, env_step)
        warning = self.monitor.observe(metrics)
        if warning:
            self._warn(warning)
        with self.lock:
            for k, v in metrics.items():
                self._pending.setdefault(k, []).append(v)
        if self.agent.updates % self.cfg.push_every == 0:
            self._publish()
        if self.env_steps - self._last_checkpoint_env >= self.cfg.checkpoint_every:
            self.checkpoint()
        return metrics

    def _train(self) -> None:
        try:
            while not self._stop.is_set():  # until finish(): episodes still on their way
                with self.lock:  # when the run has its env steps are trained on too
                    if not self._ready():
                        self.new_data.wait(timeout=0.2)
                        continue
                self.step()
        except Exception as e:  # reported through status(); the driver stops the run
            self._error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            self._finished.set()

    def _publish(self) -> None:
        state = self.agent.policy_state()
        ref = ray.put(state) if ray.is_initialized() else state
        with self.lock:
            self._weights = ref
            self.version = self.agent.updates

    def _warn(self, line: str) -> None:
        print(line, flush=True)
        self._warnings.append(line)

    def _watchdog(self) -> None:
        while not self._stop.wait(min(5.0, self.cfg.silent_after_s / 4)):
            now = time.monotonic()
            with self.lock:
                if self.done_collecting():
                    continue
                for collector, seen in self._last_seen.items():
                    quiet = now - seen
                    if quiet > self.cfg.silent_after_s and collector not in self._silent:
                        self._silent.add(collector)
                        self._warn(
                            f"warning: collector {collector} sent nothing for {quiet:.0f} s; "
                            "carrying on with the others"
                        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> str:
        """Write a checkpoint (`actors.hilserl.checkpoints`); returns its folder."""
        replay = self.run_dir / "replay"
        with self.lock:
            manifests = {
                "online": self.online.save_segment(replay / "online"),
                "offline": self.offline.save_segment(replay / "offline"),
            }
            counters = {
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "seeds_issued": self.seeds_issued,
                "offline_loaded": self.offline_loaded,
            }
            episode_log = list(self.episode_log)
            metric_log = list(self.metric_log)
        step = self.agent.updates
        name = checkpoints.checkpoint_name(step, counters["env_steps"])
        if (self.run_dir / name).exists():
            return str(self.run_dir / name)
        state = {
            "agent": self.agent.state_dict(),
            "frozen_encoder": self.encoder_export,
            "monitor": self.monitor.state(),
            "counters": counters,
            "rng": self.rng.bit_generator.state,
            "episode_log": episode_log,
            "metric_log": metric_log,
        }
        meta = {
            "step": step,
            "env_steps": counters["env_steps"],
            "episodes": counters["episodes"],
            "agent": self.agent_config.to_dict(),
            "run": self.run_meta,
            "replay": manifests,
            "time": time.time(),
        }
        final = checkpoints.write_atomically(self.run_dir, name, state, meta)
        self._last_checkpoint_env = counters["env_steps"]
        self._last_checkpoint = str(final)
        checkpoints.prune(self.run_dir)
        return str(final)

    def own_checkpoints(self) -> list[Path]:
        """This learner's checkpoints, oldest first (`checkpoints.own_checkpoints`)."""
        return checkpoints.own_checkpoints(self.run_dir)

    # ------------------------------------------------------------------ reporting

    def status(self) -> dict:
        """Metrics since the last call (losses averaged), running averages, counters."""
        now = time.monotonic()
        with self.lock:
            pending, self._pending = self._pending, {}
            warnings, self._warnings = self._warnings, []
            updates = self.agent.updates
            last_updates, last_t = self._updates_at_status
            self._updates_at_status = (updates, now)
            out = {
                "env_steps": self.env_steps,
                "learner_steps": updates,
                "critic_updates": self.agent.critic_updates,
                "episodes": self.episodes,
                "online_transitions": len(self.online),
                "offline_transitions": len(self.offline),
                "offline_loaded": self.offline_loaded,
                "updates_per_s": (updates - last_updates) / max(now - last_t, 1e-9),
                "silent_collectors": len(self._silent),
                "silent": sorted(self._silent),  # the collectors' indices
                "done": self._finished.is_set() or self._training_done(),
                "error": self._error,
                "warnings": warnings,
                "version": self.version,
                "wall_s": now - self._started,
                "learner_cpu_s": time.process_time(),
                "collector_cpu_s": float(sum(r.get("cpu_s", 0.0) for r in self.episode_log)),
                **self.monitor.metrics(),
            }
            for k, v in pending.items():
                out[k] = float(np.mean(v))
            out.update(window_metrics(self.episode_log, WINDOW))
            record = {k: v for k, v in out.items() if isinstance(v, int | float) and v is not None}
            self.metric_log.append(record)
            return out

    def history(self) -> dict:
        with self.lock:
            return {"episodes": list(self.episode_log), "metrics": list(self.metric_log)}

    def memory(self) -> dict:
        return {
            "online_bytes": self.online.nbytes(),
            "offline_bytes": self.offline.nbytes(),
            "bytes_per_frame": self.online.bytes_per_frame(),
        }

    def pid(self) -> int:
        return os.getpid()

    def frozen_encoder(self) -> dict | None:
        """The frozen encoder (weights and config) every collector computes features with."""
        return self.encoder_export

    def resumed(self) -> dict | None:
        """What this learner resumed from (checkpoint, counters, buffer sizes), if it did."""
        return self.resumed_from

    def wait(self, timeout_s: float) -> bool:
        """Until the run has its env steps and the learner steps they allow (or training
        stopped); True if so. Training goes on, on episodes still arriving, until `finish`."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                if self._finished.is_set() or self._training_done():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def finish(self) -> str:
        """Stop training and write the final checkpoint; returns its folder."""
        self._stop.set()
        with self.lock:
            self.new_data.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._publish()
        path = self.checkpoint()
        return path

    def error(self) -> str | None:
        return self._error


def learner_actor(max_restarts: int = 3, **options):
    """`HilserlLearner` as a threaded Ray actor, restarted (resuming from its checkpoint) if it
    dies."""
    return ray.remote(
        max_restarts=max_restarts, max_task_retries=max_restarts, max_concurrency=16, **options
    )(at_normal_priority(HilserlLearner))
