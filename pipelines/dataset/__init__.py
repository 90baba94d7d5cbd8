"""The LeRobot dataset layer: the one package that knows the on-disk layout.

Reads and writes LeRobot v2.1 (one parquet file per episode, JSON-lines metadata) and v3.0
(multi-episode parquet and video files, parquet metadata). Every write goes to a fsynced
temporary file in the same folder and is renamed into place, so a reader, a rerun after kill -9
or a machine that lost power sees either the old or the new file, never a truncated one.

    errors    DatasetError: every problem with a dataset, as one line naming the file
    atomic    atomic, durable writes, commits (their journal read as untrusted), clean-up
    lock      one writer at a time: `exclusive_writer`, `WriterLock` (flock in the root)
    metadata  metadata read as untrusted input: types, bounded counts, safe path templates
    tables    LeRobot's feature conventions, frame tables, parquet reads and writes
    video     camera videos through PyAV: encoding, decoding as a stream, concatenation
    stats     per-feature statistics as LeRobot keeps them
    layout    paths and metadata of both versions, `LeRobotDataset` to read them, v2.1 meta
    v30       v3.0 writing: files chunked by size, their metadata, appending an episode
    outcomes  episode outcomes (`episode_success`) staged into the episodes metadata
    recorder  `EpisodeRecorder`: episodes recorded frame by frame (either version)
    verify    silent corruption: `verify` (every file read whole), `check_footers` (cheap)

Everything a caller needs is importable from `pipelines.dataset` itself.
"""

from pipelines.dataset.atomic import (
    JOURNAL,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    commit_staged,
    finish_interrupted_commit,
    fsync_path,
    journal_pairs,
    make_folders,
    remove_stale_temps,
    replace_durably,
    stage_json,
    stage_jsonl,
    stage_text,
    staging,
    temp_path_for,
)
from pipelines.dataset.errors import (
    DatasetError,
)
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
    stage_episode_stats,
    stage_meta,
    write_meta,
)
from pipelines.dataset.lock import (
    LOCK,
    WriterLock,
    exclusive_writer,
    finish_commit_on_load,
    holds_writer_lock,
)
from pipelines.dataset.outcomes import (
    EPISODE_SUCCESS,
    stage_episode_outcomes,
)
from pipelines.dataset.recorder import (
    EpisodeRecorder,
)
from pipelines.dataset.stats import (
    QUANTILES,
    ImageStats,
    aggregate_stats,
    numeric_stats,
    table_stats,
)
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
from pipelines.dataset.v30 import (
    V30_DATA_PATH,
    V30_EPISODES_PATH,
    V30_VIDEO_PATH,
    V30Appender,
    episode_rows,
    flatten_stats,
    new_info_v30,
    stage_meta_v30,
    tasks_table,
    unflatten_stats,
    write_episodes,
)
from pipelines.dataset.verify import (
    check_footers,
    verify,
)
from pipelines.dataset.video import (
    VIDEO_CODECS,
    DamagedVideoError,
    VideoProbe,
    VideoWriter,
    check_frame_size,
    concatenate_videos,
    count_video_frames,
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
    "DamagedVideoError",
    "DatasetError",
    "EPISODE_SUCCESS",
    "EpisodeRecorder",
    "ImageStats",
    "JOURNAL",
    "KNOWN_FEATURES",
    "LOCK",
    "LeRobotDataset",
    "MissingReport",
    "QUANTILES",
    "STANDARD_COLUMNS",
    "V21",
    "V21_DATA_PATH",
    "V21_VIDEO_PATH",
    "V30",
    "V30Appender",
    "V30_DATA_PATH",
    "V30_EPISODES_PATH",
    "V30_VIDEO_PATH",
    "VIDEO_CODECS",
    "VideoProbe",
    "VideoWriter",
    "WriterLock",
    "aggregate_stats",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_footers",
    "check_frame_size",
    "column_to_numpy",
    "commit_staged",
    "concatenate_videos",
    "count_video_frames",
    "default_codec_note",
    "default_video_codec",
    "episode_data_path",
    "episode_rows",
    "episode_video_path",
    "exclusive_writer",
    "feature_from_arrow",
    "features_of",
    "finish_commit_on_load",
    "finish_interrupted_commit",
    "flatten_stats",
    "frames_table",
    "fsync_path",
    "holds_writer_lock",
    "iter_video_frames",
    "journal_pairs",
    "make_folders",
    "new_info",
    "new_info_v30",
    "numeric_stats",
    "parquet_column_names",
    "probe_video",
    "read_columns",
    "read_video",
    "remove_stale_temps",
    "replace_durably",
    "resolve_video_codec",
    "stage_episode_outcomes",
    "stage_episode_stats",
    "stage_json",
    "stage_jsonl",
    "stage_meta",
    "stage_meta_v30",
    "stage_text",
    "staging",
    "table_stats",
    "tasks_table",
    "temp_path_for",
    "unflatten_stats",
    "verify",
    "video_feature",
    "write_episodes",
    "write_meta",
    "write_parquet",
    "write_parquet_temp",
]
