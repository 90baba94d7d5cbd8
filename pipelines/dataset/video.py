"""Camera videos of a dataset, through PyAV (FFmpeg): encoding (atomic), decoding (a stream).

PyAV is LeRobot's own video library, and its wheels carry what LeRobot datasets use: the
libdav1d AV1 decoder and the SVT-AV1 encoder (LeRobot's default codec, also the kai0
releases'), H.264 (libx264), HEVC (libx265) and MPEG-4 Part 2. OpenCV's FFmpeg decodes no AV1
here, so OpenCV is kept for drawing and resizing only.

Decoding matches LeRobot's PyAV path (`decode_video_frames_pyav`) frame for frame: frames are
converted to RGB as `to_ndarray(format="rgb24")` converts them (one scaler kept per stream),
and with `from_timestamp` (a v3.0 episode's start inside a file holding many episodes) frame i
of an episode is the frame whose presentation time is within `TIMESTAMP_TOLERANCE_S`
(LeRobot's 1e-4 s) of `from_timestamp + i / fps`, reached by seeking to the key frame at or
before the first one. Frames are yielded one at a time, so a long video is never held in
memory; a video with fewer frames than asked for, or one this PyAV cannot open or decode, is a
one-line DatasetError naming the file and the codec, never silently fewer frames.

Encoding uses LeRobot's encoder settings (`encode_video_frames`, lerobot 0.6): pixel format
yuv420p, a key frame every 2 frames (`g=2`, so a seek decodes at most one extra frame), CRF 30,
SVT-AV1 preset 12 with fast-decode 0, libx264's default preset. MPEG-4 Part 2 has no CRF: a
constant quantizer (4) stands in. `video_feature` records the same `video.*` keys in info.json
as LeRobot 0.6.1. Every encoder here is deterministic: the same frames give the same bytes.
SVT-AV1 prints a banner on stderr for every stream it opens; `SVT_LOG=1` (errors only) is set
for the process unless the user set SVT_LOG, and libx265 gets `log-level=error`.

`concatenate_videos` joins same-codec videos into one without re-encoding (packets are
remuxed with shifted timestamps), as LeRobot builds v3.0's multi-episode video files, and
returns where each input starts in the result.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import weakref
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipelines.dataset.atomic import fsync_path, replace_durably, temp_path_for
from pipelines.dataset.errors import DatasetError, one_line
from pipelines.dataset.watchdog import TIMEOUT_ENV, CallThread, Stalled, encoder_timeout

# The codecs Flywheel writes, by the name LeRobot records in info.json (`video.codec`, the
# FFmpeg codec's canonical name), with the FFmpeg encoder used for each.
ENCODERS = {"av1": "libsvtav1", "h264": "libx264", "hevc": "libx265", "mpeg4": "mpeg4"}
# What the writers' --vcodec offers (HEVC is decoded, and encoded for tests and benchmarks).
VIDEO_CODECS = ("av1", "h264", "mpeg4")
PIX_FMT = "yuv420p"
GOP = 2
CRF = 30
SVTAV1_PRESET = 12
MPEG4_QUANTIZER = 4
TIMESTAMP_TOLERANCE_S = 1e-4


def _av():
    import av

    return av


def _reason(e: BaseException) -> str:
    """An FFmpeg error's message without its errno and file name (the caller names the file)."""
    return getattr(e, "strerror", None) or one_line(e)


@functools.cache
def has_encoder(codec: str) -> bool:
    """Whether this PyAV build can encode `codec` (a key of ENCODERS)."""
    av = _av()
    try:
        av.codec.Codec(ENCODERS[codec], "w")
    except (KeyError, av.codec.codec.UnknownCodecError):
        return False
    return True


def default_video_codec() -> str:
    """av1 (LeRobot's default) where this PyAV has SVT-AV1, else h264."""
    return "av1" if has_encoder("av1") else "h264"


def default_codec_note() -> str | None:
    """What a writer tells the user when the default cannot be LeRobot's av1 (else None)."""
    if default_video_codec() == "av1":
        return None
    return "this PyAV build has no SVT-AV1 encoder (libsvtav1): videos are written in h264"


def resolve_video_codec(codec: str | None) -> str:
    """The codec to write: `codec` checked (one of VIDEO_CODECS or hevc), or the default."""
    if codec is None:
        return default_video_codec()
    name = str(codec).strip().lower()
    if name not in ENCODERS:
        raise DatasetError(f"video codec {codec!r}: one of {', '.join(VIDEO_CODECS)}")
    if not has_encoder(name):
        raise DatasetError(
            f"video codec {name}: this PyAV build has no {ENCODERS[name]} encoder "
            f"(it has: {', '.join(c for c in VIDEO_CODECS if has_encoder(c)) or 'none'})"
        )
    return name


def check_frame_size(codec: str, width: int, height: int) -> None:
    """yuv420p halves the chroma planes: width and height must be even (libx264 refuses odd).

    The libx265 in PyAV's wheels corrupts memory on frames under 64x64 (seen at 48x32 and
    48x48), so HEVC is written at 64x64 or more only.
    """
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise DatasetError(
            f"video {width}x{height}: {codec} in {PIX_FMT} needs an even width and height"
        )
    if codec == "hevc" and min(width, height) < 64:
        raise DatasetError(f"video {width}x{height}: hevc is written at 64x64 or more here")


def encoder_settings(codec: str) -> dict:
    """LeRobot's encoder fields for `codec` (as `video.<field>` in info.json)."""
    return {
        "g": GOP,
        "crf": None if codec == "mpeg4" else CRF,
        "preset": SVTAV1_PRESET if codec == "av1" else None,
        "fast_decode": 0,
        "video_backend": "pyav",
        "extra_options": (
            {"qmin": MPEG4_QUANTIZER, "qmax": MPEG4_QUANTIZER} if codec == "mpeg4" else {}
        ),
    }


def _codec_options(codec: str) -> dict[str, str]:
    """The FFmpeg options for `encoder_settings(codec)` (LeRobot's `get_codec_options`)."""
    s = encoder_settings(codec)
    opts = {"g": str(s["g"])}
    if s["crf"] is not None:
        opts["crf"] = str(s["crf"])
    if s["preset"] is not None:
        opts["preset"] = str(s["preset"])
    if codec == "av1":
        opts["svtav1-params"] = f"fast-decode={s['fast_decode']}"
    if codec == "hevc":
        opts["x265-params"] = "log-level=error"
    opts.update({k: str(v) for k, v in s["extra_options"].items()})
    return opts


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Write an RGB video atomically: frames go to a temporary file, renamed on `close()`.

    `codec` is one of ENCODERS (default: `default_video_codec()`). Use as a context manager;
    on an exception the temporary file is removed and nothing appears at `path`.

    Every call into the encoder (opening it, each frame, the final flush, closing the file)
    runs on the writer's own thread with a deadline (`timeout_s`, default
    `FLYWHEEL_ENCODER_TIMEOUT_S` or 300 s): an encoder that stops making progress (SVT-AV1's
    flush was seen blocked on a futex forever) is a one-line DatasetError naming the file, the
    temporary is removed, nothing appears at `path`, and the stuck call is left to its thread.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        codec: str | None = None,
        timeout_s: float | None = None,
    ):
        av = _av()
        self.codec = resolve_video_codec(codec)
        self.path = Path(path)
        self._size = (int(width), int(height))
        check_frame_size(self.codec, *self._size)
        self._timeout = encoder_timeout() if timeout_s is None else float(timeout_s)
        if self.codec == "av1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's banner: errors only
        self._tmp = temp_path_for(self.path)
        self.frames = 0
        self._container = None
        self._calls = CallThread(f"encoder:{self.path.name}")
        # a writer dropped without close() or abort() ends its thread too
        weakref.finalize(self, self._calls.stop)
        try:
            self._call(lambda: self._open(av, fps), "opening the encoder")
        except (av.FFmpegError, ValueError, OSError) as e:
            self.abort()
            raise DatasetError(
                f"{self.path}: cannot write {self.codec} video here ({_reason(e)})"
            ) from e

    def _open(self, av, fps: float) -> None:
        self._container = av.open(str(self._tmp), "w", format="mp4")
        rate = _fps_fraction(fps)
        stream = self._container.add_stream(
            ENCODERS[self.codec], rate=rate, options=_codec_options(self.codec)
        )
        stream.width, stream.height = self._size
        stream.pix_fmt = PIX_FMT
        # open the encoder now, not on the first frame: SVT-AV1 takes ~10 ms to start, which
        # would land in a recording loop's first tick
        stream.codec_context.open()
        self._stream = stream
        self._time_base = 1 / rate

    def _call(self, fn, doing: str):
        """fn() on the encoder's thread; a DatasetError (nothing saved) if it stalls."""

        def guarded():
            try:
                return fn()
            finally:
                if self._calls.stuck:  # back after the deadline: what it wrote goes too
                    self._tmp.unlink(missing_ok=True)

        try:
            return self._calls.call(guarded, self._timeout)
        except Stalled:
            self._calls.stop()  # the thread ends if the call ever returns
            self._tmp.unlink(missing_ok=True)
            raise DatasetError(
                f"{self.path}: the {self.codec} encoder stalled {doing} (no progress in "
                f"{self._timeout:g} s; {TIMEOUT_ENV} sets the limit); nothing was saved"
            ) from None

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self._size[1], self._size[0], 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype}, expected {self._size} uint8 RGB")
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self._time_base
        try:
            self._call(
                lambda: self._container.mux(self._stream.encode(frame)),
                f"at frame {self.frames}",
            )
        except av.FFmpegError as e:
            raise DatasetError(f"{self.path}: {self.codec} encoder failed ({_reason(e)})") from e
        self.frames += 1

    def _finish(self) -> None:
        self._container.mux(self._stream.encode(None))  # the frames the encoder still holds
        self._container.close()

    def close(self) -> None:
        av = _av()
        if self.frames == 0:
            self.abort()
            raise DatasetError(f"{self.path}: no frames were written (nothing saved)")
        if self._container is None:
            raise DatasetError(f"{self.path}: the video was aborted (nothing saved)")
        try:
            self._call(self._finish, f"flushing {self.frames} frames")
        except av.FFmpegError as e:
            self.abort()
            raise DatasetError(f"{self.path}: {self.codec} encoder failed ({_reason(e)})") from e
        self._calls.stop()
        fsync_path(self._tmp)
        replace_durably(self._tmp, self.path)

    def _discard(self) -> None:
        with contextlib.suppress(Exception):  # the file is thrown away: nothing to report
            if self.frames:
                self._stream.encode(None)  # drained, so SVT-AV1 does not complain
        self._container.close()

    def abort(self) -> None:
        """Throw the video away; never blocks past the deadline (a stuck encoder is left)."""
        if self._container is not None and not self._calls.stuck:
            with contextlib.suppress(Exception):  # a stall here: the video goes all the same
                self._call(self._discard, "discarding the video")
        self._container = None
        self._calls.stop()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DamagedVideoError(DatasetError):
    """A video file that is damaged (truncated, empty) or not a video at all: no codec issue."""


def _open(path: Path, codec: str | None):
    """(container, video stream, codec name) of a video file; DatasetError if unreadable."""
    av = _av()
    if not path.exists():
        raise DatasetError(f"{path}: missing video")
    if path.is_dir():
        raise DamagedVideoError(f"{path}: a folder, not a video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DamagedVideoError(
            f"{path}: PyAV cannot open this video (codec {codec or 'unknown'}): the file is "
            f"damaged or not a video ({_reason(e)})"
        ) from e
    if not container.streams.video:
        container.close()
        raise DamagedVideoError(
            f"{path}: no video stream (codec {codec or 'unknown'}): the file is damaged or "
            f"not a video"
        )
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None:  # no codec parameters at all (a truncated header, say)
        container.close()
        raise DamagedVideoError(
            f"{path}: the video stream has no codec parameters (codec {codec or 'unknown'} "
            f"expected): the file is damaged or not a video"
        )
    file_codec = context.codec.canonical_name
    return container, stream, file_codec or codec or "unknown"


def iter_video_frames(
    path: str | os.PathLike,
    start: int = 0,
    count: int | None = None,
    codec: str | None = None,
    *,
    from_timestamp: float | None = None,
    fps: float | None = None,
    tolerance_s: float = TIMESTAMP_TOLERANCE_S,
) -> Iterator[np.ndarray]:
    """Decode frames of a video as RGB uint8 H x W x 3 arrays, one at a time.

    Without `from_timestamp`: frames `start` .. `start + count - 1` in decoding order (all from
    `start` when `count` is None). With it: the frames at `from_timestamp + (start + i) / fps`,
    i = 0 .. count - 1 (until the video ends when `count` is None), each within `tolerance_s`,
    after a seek to the key frame before the first: how LeRobot reads an episode out of a v3.0
    file. `fps` defaults to the stream's average rate. `codec` is the codec the dataset's
    metadata names, used in messages when the file does not say.
    """
    av = _av()
    path = Path(path)
    container, stream, what = _open(path, codec)
    stream.thread_type = "AUTO"  # frame threads too: ~1.7x for H.264 at 480x640, same frames
    # to_ndarray(format="rgb24")'s conversion, with one scaler kept for the whole stream
    # (to_ndarray sets one up per frame: 2-3x slower at 128x128; the same pixels)
    rgb24 = av.video.reformatter.VideoReformatter()
    done = 0
    try:
        if from_timestamp is None:
            frames = _frames_in_order(container, stream, start)
            where = f"from frame {start}"
        else:
            rate = fps or stream.average_rate or stream.guessed_rate
            if not rate:
                raise DatasetError(f"{path}: no frame rate (codec {what}); give fps")
            first = float(from_timestamp) + start / float(rate)
            frames = _frames_at_times(container, stream, first, float(rate), tolerance_s, path)
            where = f"from t={first:.4f} s"
        for frame in itertools.islice(frames, count):
            yield np.ascontiguousarray(rgb24.reformat(frame, format="rgb24").to_ndarray())
            done += 1
    except (av.FFmpegError, ValueError) as e:
        raise DatasetError(
            f"{path}: PyAV cannot decode this video (codec {what}): {_reason(e)}"
        ) from e
    finally:
        container.close()
    if done == 0 and (count is None or count > 0) and start == 0 and from_timestamp is None:
        raise DamagedVideoError(
            f"{path}: decoded no frames (codec {what}): the file is damaged or not a video"
        )
    if done == 0 and (count is None or count > 0):
        raise DatasetError(f"{path}: decoded no frames {where} (codec {what})")
    if count is not None and done < count:
        raise DatasetError(
            f"{path}: decoded {done} of {count} frames {where} (codec {what}): the video has "
            f"fewer frames than expected"
        )


def _frames_in_order(container, stream, start: int):
    for n, frame in enumerate(container.decode(stream)):
        if n >= start:
            yield frame


def _frames_at_times(container, stream, first: float, fps: float, tol: float, path: Path):
    """Decoded frames at first, first + 1/fps, ... (each within `tol`), in order."""
    tb = stream.time_base
    if first > 0:
        # the key frame at or before `first` (LeRobot's seek, one tick of margin)
        container.seek(
            max(int(round(first / float(tb))) - 1, 0),
            backward=True,
            any_frame=False,
            stream=stream,
        )
    wanted = 0
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.pts * tb)
        target = first + wanted / fps
        if t <= target - tol:
            continue  # before the span (decoded from the key frame on)
        if t >= target + tol:
            raise DatasetError(
                f"{path}: no frame at t={target:.4f} s (the next is at t={t:.4f} s; "
                f"frame {wanted} from t={first:.4f} s)"
            )
        yield frame
        wanted += 1


def count_video_frames(path: str | os.PathLike, codec: str | None = None) -> int:
    """Decode every frame of a video (not converted to RGB) and count them (`verify`)."""
    av = _av()
    path = Path(path)
    container, stream, what = _open(path, codec)
    stream.thread_type = "AUTO"
    n = 0
    try:
        for _frame in container.decode(stream):
            n += 1
    except (av.FFmpegError, ValueError) as e:
        raise DatasetError(
            f"{path}: PyAV cannot decode this video (codec {what}) after {n} frames: {_reason(e)}"
        ) from e
    finally:
        container.close()
    return n


def read_video(path: str | os.PathLike, codec: str | None = None) -> np.ndarray:
    """All frames of a (short) video as a T x H x W x 3 RGB uint8 array."""
    return np.stack(list(iter_video_frames(path, codec=codec)))


class VideoProbe(NamedTuple):
    """What `probe_video` found: the file's codec, and whether its first frame decodes here."""

    codec: str
    decodable: bool
    reason: str  # why not (without the file name); empty when decodable
    damaged: bool = False  # the file is damaged or not a video (not a codec this PyAV lacks)


def probe_video(path: str | os.PathLike, codec: str | None = None) -> VideoProbe:
    """Open a video and decode its first frame (for `flywheel inspect`)."""
    path = Path(path)
    what = codec or "unknown"
    try:
        container, _, what = _open(path, codec)
        container.close()
        next(iter_video_frames(path, 0, 1, codec=what))
    except DatasetError as e:
        damaged = isinstance(e, DamagedVideoError)
        return VideoProbe(what, False, str(e).removeprefix(f"{path}: "), damaged)
    return VideoProbe(what, True, "")


def video_feature(height: int, width: int, fps: float, codec: str) -> dict:
    """An info.json video feature, with the `video.*` keys LeRobot 0.6.1 writes."""
    info = {
        "video.height": height,
        "video.width": width,
        "video.codec": codec,
        "video.pix_fmt": PIX_FMT,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }
    if codec in ENCODERS:
        info.update({f"video.{k}": v for k, v in encoder_settings(codec).items()})
    info["is_depth_map"] = False
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": info,
    }


def concatenate_videos(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike
) -> list[float]:
    """Join videos of one codec, size and pixel format into `output`, without re-encoding.

    Packets are copied with their timestamps shifted so each input follows the previous one
    (an input spans its first frame's time to its last frame's end). Written to a temporary
    file, fsynced and renamed, so `output` may be one of the inputs. Returns each input's
    start time in `output`, in seconds: the episodes' `from_timestamp` in a v3.0 dataset.
    """
    av = _av()
    paths = [Path(p) for p in inputs]
    output = Path(output)
    if not paths:
        raise DatasetError(f"{output}: no videos to concatenate")
    sources = []
    try:
        for p in paths:
            container, stream, what = _open(p, None)
            sources.append((p, container, stream, what))
        p0, _, s0, what0 = sources[0]
        ref = (what0, s0.width, s0.height, s0.codec_context.pix_fmt)
        extradata0 = s0.codec_context.extradata
        for p, _, s, what in sources[1:]:
            got = (what, s.width, s.height, s.codec_context.pix_fmt)
            if got != ref:
                raise DatasetError(
                    f"{p}: {got[0]} {got[1]}x{got[2]} {got[3]}, cannot join it to {p0} "
                    f"({ref[0]} {ref[1]}x{ref[2]} {ref[3]}) without re-encoding"
                )
            if s.codec_context.extradata != extradata0:
                raise DatasetError(
                    f"{p}: encoded with other settings than {p0} (codec headers differ), "
                    f"cannot join them without re-encoding"
                )
        tmp = temp_path_for(output)
        starts: list[float] = []
        try:
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
                base = s0.time_base  # every timestamp below is in this time base
                out_stream = out.add_stream_from_template(template=s0, opaque=True)
                out_stream.time_base = base
                offset = 0
                for p, container, stream, _ in sources:
                    starts.append(float(offset * base))
                    offset += _remux(container, stream, out, out_stream, offset, base, p)
            fsync_path(tmp)
            replace_durably(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    except av.FFmpegError as e:
        raise DatasetError(f"{output}: cannot concatenate videos ({_reason(e)})") from e
    finally:
        for _, container, _, _ in sources:
            container.close()
    return starts


def _remux(container, stream, out, out_stream, offset: int, base: Fraction, path: Path) -> int:
    """Copy `stream`'s packets into `out_stream` from `offset` (in `base`); returns the span."""
    tb = stream.time_base
    first = stream.start_time
    if first is None:  # no start time in the header: the earliest packet's
        first = min(p.pts for p in container.demux(stream) if p.pts is not None)
        container.seek(0, stream=stream)
    rate = stream.average_rate or stream.guessed_rate
    frame_ticks = int(round(1 / (rate * tb))) if rate else 1
    end = first
    for packet in container.demux(stream):
        if packet.dts is None or packet.pts is None:
            continue  # the demuxer's flush packet
        end = max(end, packet.pts + (packet.duration or frame_ticks))
        packet.pts = offset + int(round((packet.pts - first) * tb / base))
        packet.dts = offset + int(round((packet.dts - first) * tb / base))
        packet.duration = int(round((packet.duration or frame_ticks) * tb / base))
        packet.time_base = base
        packet.stream = out_stream
        out.mux(packet)
    if end == first:
        raise DatasetError(f"{path}: no video packets to concatenate")
    return int(round((end - first) * tb / base))
