"""The LeRobot dataset layer: the one package that knows the on-disk layout.

Reads and writes LeRobot v2.1 (one parquet file per episode, JSON-lines metadata) and v3.0
(multi-episode parquet and video files, parquet metadata). Every write goes to a fsynced
temporary file in the same folder and is renamed into place, so a reader, a rerun after kill -9
or a machine that lost power sees either the old or the new file, never a truncated one.

    errors    DatasetError: every problem with a dataset, as one line naming the file
    atomic    atomic, durable writes and the clean-up of what a killed writer left
    tables    LeRobot's feature conventions, frame tables, parquet reads and writes
    video     camera videos through PyAV: encoding, decoding as a stream, concatenation
    stats     per-feature statistics as LeRobot keeps them
    layout    paths and metadata of both versions, and `LeRobotDataset` to read them
    recorder  `EpisodeRecorder`: episodes recorded frame by frame

Everything a caller needs is importable from `pipelines.dataset` itself.
"""

from pipelines.dataset.atomic import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    fsync_path,
    remove_stale_temps,
    replace_durably,
    temp_path_for,
)
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.layout import (
    DEFAULT_CHUNKS_SIZE,
    V21,
    V21_DATA_PATH,
    V21_VIDEO_PATH,
    V30,
    LeRobotDataset,
    MissingReport,
    episode_data_path,
    episode_video_path,
    new_info,
    update_episode_stats,
    write_meta,
)
from pipelines.dataset.recorder import EpisodeRecorder
from pipelines.dataset.stats import ImageStats, numeric_stats, table_stats
from pipelines.dataset.tables import (
    ALLOWED_VALUES,
    KNOWN_FEATURES,
    STANDARD_COLUMNS,
    column_to_numpy,
    feature_from_arrow,
    features_of,
    frames_table,
    parquet_column_names,
    read_columns,
    write_parquet,
    write_parquet_temp,
)
from pipelines.dataset.video import (
    VIDEO_CODECS,
    VideoProbe,
    VideoWriter,
    check_frame_size,
    concatenate_videos,
    default_codec_note,
    default_video_codec,
    iter_video_frames,
    probe_video,
    read_video,
    resolve_video_codec,
    video_feature,
)

__all__ = [
    "ALLOWED_VALUES",
    "DEFAULT_CHUNKS_SIZE",
    "KNOWN_FEATURES",
    "STANDARD_COLUMNS",
    "V21",
    "V21_DATA_PATH",
    "V21_VIDEO_PATH",
    "V30",
    "VIDEO_CODECS",
    "DatasetError",
    "EpisodeRecorder",
    "ImageStats",
    "LeRobotDataset",
    "MissingReport",
    "VideoProbe",
    "VideoWriter",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_frame_size",
    "column_to_numpy",
    "concatenate_videos",
    "default_codec_note",
    "default_video_codec",
    "episode_data_path",
    "episode_video_path",
    "feature_from_arrow",
    "features_of",
    "frames_table",
    "fsync_path",
    "iter_video_frames",
    "new_info",
    "numeric_stats",
    "parquet_column_names",
    "probe_video",
    "read_columns",
    "read_video",
    "remove_stale_temps",
    "replace_durably",
    "resolve_video_codec",
    "table_stats",
    "temp_path_for",
    "update_episode_stats",
    "video_feature",
    "write_meta",
    "write_parquet",
    "write_parquet_temp",
]
