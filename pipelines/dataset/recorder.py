"""`EpisodeRecorder`: episodes recorded frame by frame into a LeRobot dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.dataset.atomic import finish_interrupted_commit, temp_path_for
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.layout import (
    DEFAULT_CHUNKS_SIZE,
    V21,
    V30,
    LeRobotDataset,
    episode_data_path,
    episode_video_path,
    new_info,
    write_meta,
)
from pipelines.dataset.lock import LOCK, WriterLock
from pipelines.dataset.metadata import EPISODE_SUCCESS
from pipelines.dataset.stats import ImageStats, table_stats
from pipelines.dataset.tables import features_of, frames_table, write_parquet
from pipelines.dataset.units import UNITS_KEY, internal_units, joint_feature
from pipelines.dataset.v30 import V30Appender, new_info_v30
from pipelines.dataset.video import (
    VideoWriter,
    check_frame_size,
    resolve_video_codec,
    video_feature,
)


class EpisodeRecorder:
    """Record episodes frame by frame into a LeRobot dataset (new, or appended to).

    `begin()` starts an episode (its camera videos are written as frames arrive); `add()`
    buffers a frame; `save()` writes the episode and the metadata so that the dataset on disk is
    always complete: the episode being recorded only appears once saved. `discard()` drops it
    (re-record). v3.0 (a new dataset's default, as LeRobot >= 0.4 records): the episode goes
    into the current shared files (or starts the next ones when they are full), as one commit
    (`pipelines.dataset.v30.V30Appender`). v2.1 (`version="v2.1"`, or an existing v2.1
    dataset): the episode's own parquet file and videos, then the metadata, each atomically.

    `vcodec` is the video codec (av1, h264 or mpeg4; default: av1 where PyAV has SVT-AV1).
    Appending keeps the dataset's codec: asking for another one is a DatasetError.

    `observation.state` and `action` are named `<joint>.pos` and carry their units in
    info.json (`pipelines.dataset.units`): Flywheel's (degrees, the gripper range_0_100), or
    `action_units` for another action (end-effector deltas). Appending to a dataset whose
    units differ is a DatasetError.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        fps: float,
        task: str,
        joint_names: Sequence[str],
        cameras: dict[str, tuple[int, int]],
        robot_type: str = "so101_follower",
        data_type: str = "demo",
        version: str | None = None,
        vcodec: str | None = None,
        action_names: Sequence[str] | None = None,
        action_units: Sequence[str] | None = None,
    ):
        """`version`: the layout of a new dataset (default v3.0); an existing dataset keeps its
        own, and asking for another is an error. `action_names`: the action's components when
        they are not the joints' targets (e.g. end-effector deltas dx, dy, dz, gripper), and
        `action_units` their units (None: none recorded)."""
        self.root = Path(root)
        self.fps = fps
        self.task = task
        self.cameras = dict(cameras)  # key -> (height, width)
        self.data_type = data_type
        names = [f"{j}.pos" for j in joint_names]
        self._vector = joint_feature(names, internal_units(names))
        if action_names is None:
            self._action = dict(self._vector)
        else:
            self._action = joint_feature(list(action_names), action_units)
        self._episodes: list[dict] = []
        self._stats: dict[int, dict] = {}
        self._tasks: dict[int, str] = {}
        self.info: dict | None = None
        self.robot_type = robot_type
        self.chunks_size = DEFAULT_CHUNKS_SIZE
        self.version = version or V30
        if version not in (None, V21, V30):
            raise DatasetError(f"--format {version!r}: {V21} or {V30}")
        self._appender: V30Appender | None = None
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root}: exists and is not a folder")
        # one writer at a time, for the recorder's life (`close()`); taking it finishes a
        # killed writer's commit and removes its temporaries
        self._lock = WriterLock(self.root, "recording episodes")
        try:
            if (self.root / "meta" / "info.json").exists():
                self.vcodec = self._continue(version, vcodec)
            elif any(p.name != LOCK for p in self.root.iterdir()):
                raise DatasetError(
                    f"{self.root}: exists, is not empty and is not a LeRobot dataset"
                )
            else:
                self.vcodec = resolve_video_codec(vcodec)
            for h, w in self.cameras.values():
                check_frame_size(self.vcodec, w, h)
        except BaseException:
            self._lock.release()
            raise
        self._frames: list[tuple] = []
        self._videos: dict[str, VideoWriter] = {}
        self._image_stats: dict[str, ImageStats] = {}
        self.episode_index: int | None = None

    def _continue(self, version: str | None, vcodec: str | None) -> str:
        """Load the dataset to append to; returns the video codec to record with (its own)."""
        finish_interrupted_commit(self.root)
        ds = LeRobotDataset(self.root)
        if version is not None and ds.version != version:
            raise DatasetError(
                f"{self.root}/meta/info.json: a LeRobot {ds.version} dataset; cannot append "
                f"{version} episodes to it"
            )
        self.version = ds.version
        if ds.fps != self.fps:
            raise DatasetError(f"{self.root}/meta/info.json: fps {ds.fps}, recording at {self.fps}")
        want = {
            k: (f["shape"][0], f["shape"][1])
            for k, f in ds.features.items()
            if f.get("dtype") == "video"
        }
        if want != self.cameras:
            raise DatasetError(
                f"{self.root}/meta/info.json: cameras {want}, recording {self.cameras}"
            )
        for key, mine in (("observation.state", self._vector), ("action", self._action)):
            theirs = (ds.features.get(key) or {}).get(UNITS_KEY)
            if theirs is not None and theirs != mine.get(UNITS_KEY):
                raise DatasetError(
                    f"{self.root}/meta/info.json: {key} is in {theirs}; cannot append "
                    f"episodes in {mine.get(UNITS_KEY)}"
                )
        self.info = ds.info
        self.chunks_size = ds.chunks_size
        self._tasks = dict(ds.tasks)
        self._episodes = [ds.episodes[e] for e in sorted(ds.episodes)]
        self._stats = dict(ds.episodes_stats)
        if self.version == V30:
            self._appender = V30Appender(self.root, ds.info)
        codecs = {(ds.features[k].get("info") or {}).get("video.codec") for k in want}
        if not codecs:
            return resolve_video_codec(vcodec)
        have = sorted(str(c) for c in codecs)
        if len(have) > 1 or (vcodec is not None and resolve_video_codec(vcodec) != have[0]):
            raise DatasetError(
                f"{self.root}/meta/info.json: the videos are {', '.join(have)}; appending "
                f"keeps the dataset's codec (leave out the codec option, or record a new dataset)"
            )
        try:
            return resolve_video_codec(have[0])
        except DatasetError as e:
            raise DatasetError(f"{self.root}/meta/info.json: cannot append: {e}") from None

    def _episode_video(self, key: str) -> Path:
        if self.version == V21:
            return episode_video_path(self.root, self.episode_index, key, self.chunks_size)
        # v3.0: a single-episode video that `save` concatenates into the camera's shared file
        return temp_path_for(self.root / "videos" / key / f"episode_{self.episode_index:06d}.mp4")

    @property
    def total_frames(self) -> int:
        return sum(int(e["length"]) for e in self._episodes)

    def begin(self) -> int:
        if self.episode_index is not None:
            raise RuntimeError("an episode is being recorded: save() or discard() it first")
        self.episode_index = len(self._episodes)
        self._frames = []
        self._videos = {
            key: VideoWriter(self._episode_video(key), self.fps, w, h, codec=self.vcodec)
            for key, (h, w) in self.cameras.items()
        }
        self._image_stats = {key: ImageStats() for key in self.cameras}
        return self.episode_index

    def add(
        self,
        state: np.ndarray,
        action: np.ndarray,
        images: dict[str, np.ndarray],
        intervention: bool = False,
    ) -> None:
        for key, writer in self._videos.items():
            writer.write(images[key])
            self._image_stats[key].add(images[key])
        self._frames.append(
            (np.asarray(state, np.float32), np.asarray(action, np.float32), bool(intervention))
        )

    def discard(self) -> None:
        for writer in self._videos.values():
            writer.abort()
        self._videos, self._frames, self.episode_index = {}, [], None

    def close(self) -> None:
        """Drop an episode still being recorded (nothing of it stays on disk), and let the
        dataset go (its writer lock)."""
        try:
            if self.episode_index is not None:
                self.discard()
        finally:
            if self._appender is not None:
                self._appender.close()
            self._lock.release()

    def save(
        self,
        success: bool,
        success_from: int | None = None,
        episode_success: bool | None = None,
    ) -> dict:
        """Write the episode; `success` puts reward 1.0 on its last frame, or on every frame
        from `success_from` on (frames recorded after the success). `episode_success` is the
        episode's outcome, written into the episodes metadata (`pipelines.dataset.outcomes`);
        None: the recorder does not know it, and the episode has no outcome."""
        if self.episode_index is None or not self._frames:
            raise RuntimeError("no frames to save")
        if episode_success is not None and not isinstance(episode_success, bool | np.bool_):
            raise TypeError(f"episode_success {episode_success!r}: True, False or None")
        ep, n = self.episode_index, len(self._frames)
        if self.task not in self._tasks.values():
            self._tasks[len(self._tasks)] = self.task
        task_index = next(i for i, t in self._tasks.items() if t == self.task)
        reward = np.zeros(n, np.float32)
        done = np.zeros(n, bool)
        done[-1] = True
        if success:
            reward[n - 1 if success_from is None else success_from :] = 1.0
        interv = np.array([f[2] for f in self._frames])
        first = self.total_frames
        table = frames_table(
            {
                "observation.state": np.stack([f[0] for f in self._frames]),
                "action": np.stack([f[1] for f in self._frames]),
                "timestamp": np.arange(n, dtype=np.float32) / np.float32(self.fps),
                "frame_index": np.arange(n),
                "episode_index": np.full(n, ep),
                "index": np.arange(first, first + n),
                "task_index": np.full(n, task_index),
                "next.reward": reward,
                "next.done": done,
                "data_type": np.where(interv, "intervention", self.data_type).astype(object),
                "complementary_info.is_intervention": interv,
            },
            {"observation.state": self._vector, "action": self._action},
        )
        for writer in self._videos.values():
            writer.close()
        stats = table_stats(table)
        stats.update({key: acc.result() for key, acc in self._image_stats.items()})
        if self.info is None:
            videos = {
                k: video_feature(h, w, self.fps, self.vcodec) for k, (h, w) in self.cameras.items()
            }
            features = features_of(table, videos)
            features["observation.state"] = dict(self._vector)
            features["action"] = dict(self._action)
            make_info = new_info_v30 if self.version == V30 else new_info
            self.info = make_info(
                fps=self.fps,
                features=features,
                total_episodes=0,
                total_frames=0,
                total_tasks=0,
                robot_type=self.robot_type,
            )
            if self.version == V30:
                self._appender = V30Appender(self.root, self.info)
        row = {"episode_index": ep, "tasks": [self.task], "length": n}
        if episode_success is not None:
            row[EPISODE_SUCCESS] = bool(episode_success)
        self._episodes.append(row)
        if self._appender is not None:
            self._appender.tasks = dict(self._tasks)
            self._appender.append(
                table,
                {k: w.path for k, w in self._videos.items()},
                stats,
                [self.task],
                episode_success=row.get(EPISODE_SUCCESS),
            )
            for writer in self._videos.values():  # concatenated into the shared files
                writer.path.unlink(missing_ok=True)
            self.info = self._appender.info
        else:
            self._save_v21(ep, table, stats)
        self._videos, self._frames, self.episode_index = {}, [], None
        return {
            "episode_index": ep,
            "length": n,
            "success": success,
            EPISODE_SUCCESS: row.get(EPISODE_SUCCESS),
        }

    def _save_v21(self, ep: int, table, stats: dict) -> None:
        write_parquet(episode_data_path(self.root, ep, chunks_size=self.chunks_size), table)
        self._stats[ep] = stats
        n_eps = len(self._episodes)
        n_videos = len(self.cameras)
        self.info.update(
            total_episodes=n_eps,
            total_frames=self.total_frames,
            total_tasks=len(self._tasks),
            total_videos=n_videos * n_eps,
            total_chunks=(n_eps - 1) // DEFAULT_CHUNKS_SIZE + 1,
            splits={"train": f"0:{n_eps}"},
        )
        write_meta(
            self.root,
            info=self.info,
            tasks=self._tasks,
            episodes=self._episodes,
            episodes_stats=self._stats,
        )
