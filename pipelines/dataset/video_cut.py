"""Episodes cut out of a multi-episode video (v3.0 -> v2.1), without re-encoding when it can.

A v3.0 video file holds consecutive episodes, episode e spanning [from_timestamp,
from_timestamp + length / fps). Its own video is then the packets whose presentation times
fall in that span, copied as they are with their timestamps shifted to start at 0: the same
compressed frames, so the same decoded pixels. That holds only when the span decodes on its
own (`remux_obstacle`):

* its first packet in decoding order is a key frame, and it is the span's first frame (no
  frame of the span is shown before it: open-GOP leading frames refer to the episode before);
* no packet of another episode sits between the span's packets in decoding order (B-frames
  across the boundary).

LeRobot encodes every episode on its own and concatenates the files, so every episode of a
LeRobot v3.0 dataset starts on a key frame and is cut. Where one does not, that episode is
decoded (as `iter_video_frames` reads it, LeRobot's way) and encoded again in the same codec
with LeRobot's settings (`VideoWriter`): lossy, so `cut_episodes` returns which episodes and
why, for the caller to say.

`stream_signature` tells which per-episode videos can be joined by `concatenate_videos`
(v2.1 -> v3.0): same codec, size, pixel format and codec headers.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from pipelines.dataset.atomic import fsync_path, replace_durably, temp_path_for
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.video import (
    TIMESTAMP_TOLERANCE_S,
    VideoWriter,
    _av,
    _open,
    _reason,
    iter_video_frames,
)


class Packet(NamedTuple):
    """One packet of a video stream, in decoding order (times in the stream's time base)."""

    pts: int
    dts: int
    key: bool


class EpisodeSpan(NamedTuple):
    """Where an episode is in a multi-episode video: its first frame's time and its frames."""

    episode: int
    from_timestamp: float
    length: int


def remux_obstacle(packets: Sequence[Packet], members: Sequence[int]) -> str | None:
    """Why the packets at `members` (indices into `packets`, in decoding order) cannot be
    copied out as a video of their own (module docstring); None when they can."""
    if not members:
        return "it has no frames in the file"
    first = packets[members[0]]
    if not first.key:
        return "its first frame is not a key frame"
    if min(packets[i].pts for i in members) < first.pts:
        return "frames shown before its first key frame depend on the episode before"
    if members[-1] - members[0] + 1 != len(members):
        return "frames of another episode are interleaved with its frames in decoding order"
    return None


def index_packets(path: Path) -> tuple[Fraction, list[Packet]]:
    """The video stream's time base and its packets in decoding order (demuxed, not decoded)."""
    av = _av()
    container, stream, what = _open(path, None)
    try:
        packets = [
            Packet(p.pts, p.dts if p.dts is not None else p.pts, bool(p.is_keyframe))
            for p in container.demux(stream)
            if p.pts is not None
        ]
    except av.FFmpegError as e:
        raise DatasetError(f"{path}: cannot read the video's packets ({what}): {_reason(e)}") from e
    finally:
        container.close()
    return stream.time_base, packets


def span_members(
    packets: Sequence[Packet], time_base: Fraction, spans: Sequence[EpisodeSpan], fps: float
) -> dict[int, list[int]]:
    """Each episode's packets (indices in decoding order): those shown within its span."""
    order = sorted(spans, key=lambda s: s.from_timestamp)
    starts = [s.from_timestamp - TIMESTAMP_TOLERANCE_S for s in order]
    members: dict[int, list[int]] = {s.episode: [] for s in spans}
    for i, p in enumerate(packets):
        t = float(p.pts * time_base)
        k = bisect.bisect_right(starts, t) - 1
        if k < 0:
            continue
        span = order[k]
        if t < span.from_timestamp + span.length / fps - TIMESTAMP_TOLERANCE_S:
            members[span.episode].append(i)
    return members


def cut_episodes(
    path: str | os.PathLike,
    spans: Sequence[EpisodeSpan],
    outputs: dict[int, Path],
    fps: float,
    codec: str | None = None,
) -> dict[int, str]:
    """Write each episode of the multi-episode video `path` to `outputs[episode]`.

    Cut without re-encoding where `remux_obstacle` allows, else re-encoded in the file's codec;
    returns {episode: why it was re-encoded}. An episode whose span does not hold exactly its
    `length` frames is a DatasetError. Each output is written to a temporary, fsynced, renamed.
    """
    path = Path(path)
    time_base, packets = index_packets(path)
    members = span_members(packets, time_base, spans, fps)
    by_episode = {s.episode: s for s in spans}
    reencode: dict[int, str] = {}
    for ep, idx in members.items():
        span = by_episode[ep]
        if len(idx) != span.length:
            raise DatasetError(
                f"{path}: {len(idx)} frames from t={span.from_timestamp:.4f} s for episode "
                f"{ep}, which has {span.length} rows"
            )
        why = remux_obstacle(packets, idx)
        if why is not None:
            reencode[ep] = why
    owner = {i: ep for ep, idx in members.items() if ep not in reencode for i in idx}
    if owner:
        shift = {ep: packets[members[ep][0]].pts for ep in set(owner.values())}
        _remux_spans(path, owner, shift, outputs)
    for ep in sorted(reencode):
        _reencode(path, by_episode[ep], outputs[ep], fps, codec)
    return reencode


def _remux_spans(
    path: Path, owner: dict[int, int], shift: dict[int, int], outputs: dict[int, Path]
) -> None:
    """One pass over the packets: each owned packet copied, shifted, into its episode's file
    (an episode's packets are contiguous in decoding order, so one output is open at a time)."""
    av = _av()
    container, stream, what = _open(path, None)
    out = out_stream = tmp = None
    current = None
    try:
        for n, packet in enumerate(p for p in container.demux(stream) if p.pts is not None):
            ep = owner.get(n)
            if ep is None:
                continue
            if ep != current:
                if out is not None:
                    _finish(out, tmp, outputs[current])
                tmp = temp_path_for(outputs[ep])
                out = av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"})
                out_stream = out.add_stream_from_template(template=stream, opaque=True)
                out_stream.time_base = stream.time_base
                current = ep
            packet.pts -= shift[ep]
            packet.dts = (packet.dts if packet.dts is not None else packet.pts) - shift[ep]
            packet.time_base = stream.time_base
            packet.stream = out_stream
            out.mux(packet)
        if out is not None:
            _finish(out, tmp, outputs[current])
            out = None
    except av.FFmpegError as e:
        raise DatasetError(
            f"{path}: cannot cut episode {current} out ({what}): {_reason(e)}"
        ) from e
    finally:
        container.close()
        if out is not None:
            out.close()
            tmp.unlink(missing_ok=True)


def _finish(out, tmp: Path, target: Path) -> None:
    out.close()
    fsync_path(tmp)
    replace_durably(tmp, target)


def _reencode(path: Path, span: EpisodeSpan, output: Path, fps: float, codec: str | None) -> None:
    container, stream, what = _open(path, codec)
    width, height = stream.width, stream.height
    container.close()
    frames = iter_video_frames(
        path, count=span.length, codec=what, from_timestamp=span.from_timestamp, fps=fps
    )
    with VideoWriter(output, fps, width, height, codec=what) as writer:
        for rgb in frames:
            writer.write(rgb)


def stream_signature(path: str | os.PathLike) -> tuple:
    """What must match for `concatenate_videos` to join two videos without re-encoding:
    codec, width, height, pixel format and the codec headers (extradata)."""
    container, stream, what = _open(Path(path), None)
    try:
        context = stream.codec_context
        return (what, stream.width, stream.height, context.pix_fmt, context.extradata)
    finally:
        container.close()
