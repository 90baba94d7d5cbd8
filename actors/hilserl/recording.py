"""The online episodes of a HIL-SERL run, written as a LeRobot dataset (Stage 0-3 read it).

`OnlineRecorder` (a Ray actor in a run: collectors hand it the same episode object they send
the learner, so the frames cross the object store once) writes each episode through
`EpisodeRecorder`: `observation.state`, the camera videos, `action` = the end-effector delta
sent, in the env's units (`dx, dy, dz` in m, `gripper` 0..100), `next.reward` (1.0 on the last
frame of a success), `next.done`, `data_type` (`auto` for the policy's steps, `intervention`
for the operator's) and `complementary_info.is_intervention`. A LeRobot episode has no frame
for the final observation, so each episode's T steps are T frames. A rerun of the same run
appends to the dataset; each episode appears only once written whole.

The episode's outcome, `episode_success` in the episodes metadata, is the success the rollout
saw (its `info["success"]`): the simulator's or the emulated arm's own success rule, and on a
real arm the reward's (the episode ended on a reward > 0). With a served classifier as the
reward in the simulator the two may differ: the outcome is the simulator's, `next.reward` the
classifier's.

Nothing is lost silently: a collector keeps at most `RECORDS_IN_FLIGHT` episodes on their way
here (`actors.hilserl.collector.RecordQueue`: a slow recorder slows the collectors instead of
piling episodes up in its mailbox and the object store), a failure is kept (`progress`) and
ends the run with an error, and the driver waits for every episode while the recorder keeps
writing. An episode whose collector died before it was read here (its object went with its
owner) is counted as `lost`, and reported.
"""

from __future__ import annotations

from pathlib import Path

import ray

from actors.arm import JOINTS
from pipelines.dataset import EpisodeRecorder
from pipelines.dataset.units import EE_UNITS
from pipelines.simulator.wrappers import EE_ACTION_NAMES, denormalize_ee_action


class OnlineRecorder:
    def __init__(
        self,
        root: str,
        fps: int,
        task: str,
        cameras: dict,
        max_ee_step: float,
        version: str | None = None,
    ):
        """`version`: a new recording's layout (None: the recorder's default, v3.0); a
        resumed run's recording keeps its own."""
        self.recorder = EpisodeRecorder(
            root,
            fps=fps,
            task=task,
            joint_names=JOINTS,
            cameras={k: tuple(v) for k, v in cameras.items()},
            data_type="auto",
            action_names=EE_ACTION_NAMES,
            action_units=EE_UNITS,
            version=None if (Path(root) / "meta" / "info.json").exists() else version,
        )
        self.cameras = list(cameras)
        self.max_ee_step = max_ee_step
        self.recorded = 0
        self.frames = 0
        self.lost = 0  # episodes whose collector died before they were read
        self.errors: list[str] = []

    def record(self, episodes: list) -> int:
        try:
            return self._record(episodes)
        except Exception as e:
            self.errors.append(" ".join(f"{type(e).__name__}: {e}".split())[:300])
            raise

    def _record(self, episodes: list) -> int:
        for item in episodes:
            try:
                episode = ray.get(item) if isinstance(item, ray.ObjectRef) else item
            except (ray.exceptions.OwnerDiedError, ray.exceptions.ObjectLostError):
                self.lost += 1
                continue
            t = len(episode)
            if t == 0:
                continue
            actions = denormalize_ee_action(episode.action, self.max_ee_step)
            self.recorder.begin()
            try:
                for i in range(t):
                    images = {k: episode.obs[k][i] for k in self.cameras}
                    self.recorder.add(
                        episode.obs["observation.state"][i],
                        actions[i],
                        images,
                        bool(episode.intervention[i]),
                    )
            except BaseException:
                self.recorder.discard()
                raise
            self.recorder.save(
                success=bool(episode.terminated),
                episode_success=bool(episode.info.get("success", episode.terminated)),
            )
            self.recorded += 1
            self.frames += t
        return self.recorded

    def count(self) -> int:
        return self.recorded

    def progress(self) -> tuple[int, int, list[str]]:
        """(episodes written, episodes lost with their collector, failures)."""
        return self.recorded, self.lost, list(self.errors)

    def close(self) -> int:
        self.recorder.close()
        return self.recorded
