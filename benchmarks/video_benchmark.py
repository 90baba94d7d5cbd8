"""Benchmark of camera video encoding and decoding per codec (not a test).

For each codec (av1 = SVT-AV1 / libdav1d, h264 = libx264, hevc = libx265, mpeg4 = MPEG-4 Part 2)
and each frame size (128x128, Flywheel's default camera; 480x640, LeRobot's and kai0's
cameras), a synthetic scene (gradients that drift, a disc that moves: smooth, like a camera's
picture) is encoded with Flywheel's `VideoWriter` (LeRobot's encoder settings: yuv420p, g=2,
crf 30, SVT-AV1 preset 12) and decoded to RGB uint8 arrays:

- **pyav**: Flywheel's `iter_video_frames`, the whole file (what every stage uses);
- **pyav_span**: an episode's 30 frames read by timestamp from a file holding 8 episodes
  (`concatenate_videos`), as a v3.0 dataset is read: seek to the key frame, decode, select;
- **opencv**: `cv2.VideoCapture` plus the BGR to RGB conversion, where OpenCV's FFmpeg decodes
  the codec at all (it decodes no AV1 on these machines).

    python benchmarks/video_benchmark.py [--frames 300] [--repeats 3]
        [--codecs av1,h264,hevc,mpeg4] [--sizes 128x128,480x640] [--out FILE]

Figures are frames/s, the median of `repeats` runs, codecs' own threads left at their
defaults (the machine's cores may be shared: say under what load the figures were taken).
Also written: bytes per frame and the mean absolute error of the decoded frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.dataset import (  # noqa: E402
    DatasetError,
    VideoWriter,
    concatenate_videos,
    iter_video_frames,
)

FPS = 30
SPAN = 30  # frames per episode in the span test


def scene(n: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    radius2 = (min(height, width) / 8) ** 2
    for t in range(n):
        f = frames[t]
        f[..., 0] = (xx * 256 // width + 2 * t) % 256
        f[..., 1] = (yy * 256 // height) % 256
        f[..., 2] = ((xx + yy) * 128 // (width + height) + t) % 256
        cy = height / 2 + height / 4 * np.sin(t / 15)
        cx = width / 2 + width / 4 * np.cos(t / 15)
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < radius2] = (240, 40, 30)
    return frames


def encode(path: Path, frames: np.ndarray, codec: str) -> float:
    t0 = time.perf_counter()
    with VideoWriter(path, FPS, frames.shape[2], frames.shape[1], codec=codec) as w:
        for f in frames:
            w.write(f)
    return len(frames) / (time.perf_counter() - t0)


def decode_pyav(path: Path) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    frames = list(iter_video_frames(path))
    return len(frames) / (time.perf_counter() - t0), np.stack(frames)


def decode_span(path: Path, starts: list[float], rng: np.random.Generator) -> float:
    order = rng.permutation(len(starts))
    t0 = time.perf_counter()
    for i in order:
        n = sum(1 for _ in iter_video_frames(path, count=SPAN, from_timestamp=starts[i], fps=FPS))
        assert n == SPAN
    return len(order) * SPAN / (time.perf_counter() - t0)


def decode_opencv(path: Path, n: int) -> float | None:
    import cv2

    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    done = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        done += 1
    cap.release()
    if done != n:
        return None  # OpenCV cannot decode this codec (or not all of it)
    return done / (time.perf_counter() - t0)


def bench(codec: str, height: int, width: int, n: int, repeats: int, work: Path) -> dict:
    frames = scene(n, height, width)
    path = work / f"{codec}_{height}x{width}.mp4"
    rng = np.random.default_rng(0)
    enc, dec, span, cv = [], [], [], []
    for r in range(repeats):
        enc.append(encode(path, frames, codec))
        fps, back = decode_pyav(path)
        dec.append(fps)
        cv.append(decode_opencv(path, n))
        if r == 0:
            episode = work / f"{codec}_{height}x{width}_episode.mp4"
            encode(episode, frames[:SPAN], codec)
            many = work / f"{codec}_{height}x{width}_8episodes.mp4"
            starts = concatenate_videos([episode] * 8, many)
        span.append(decode_span(many, starts, rng))
    ok = [c for c in cv if c is not None]
    return {
        "codec": codec,
        "size": f"{height}x{width}",
        "frames": n,
        "encode_fps": round(statistics.median(enc), 1),
        "pyav_decode_fps": round(statistics.median(dec), 1),
        "pyav_span_decode_fps": round(statistics.median(span), 1),
        "opencv_decode_fps": round(statistics.median(ok), 1) if len(ok) == len(cv) else None,
        "bytes_per_frame": round(path.stat().st_size / n, 1),
        "mean_abs_error": round(float(np.abs(back.astype(int) - frames.astype(int)).mean()), 2),
        "all_encode_fps": [round(x, 1) for x in enc],
        "all_pyav_decode_fps": [round(x, 1) for x in dec],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--codecs", default="av1,h264,hevc,mpeg4")
    p.add_argument("--sizes", default="128x128,480x640", help="HEIGHTxWIDTH,...")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "video.json"))
    args = p.parse_args()
    if args.frames < SPAN:
        p.error(f"--frames {args.frames}: at least {SPAN}")
    import av
    import cv2

    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in sizes:
            for codec in args.codecs.split(","):
                try:
                    result = bench(codec, height, width, args.frames, args.repeats, Path(tmp))
                    results.append(result)
                except DatasetError as e:
                    print(f"{codec} {height}x{width}: skipped ({e})", file=sys.stderr)
    report = {
        "frames": args.frames,
        "repeats": args.repeats,
        "fps": FPS,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "opencv": cv2.__version__,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    head = ("codec", "size", "encode", "pyav", "pyav span", "opencv", "B/frame", "err")
    print(" ".join(f"{h:>10}" for h in head), "   (frames/s)")
    for r in results:
        cv = r["opencv_decode_fps"]
        row = (
            r["codec"],
            r["size"],
            f"{r['encode_fps']:.0f}",
            f"{r['pyav_decode_fps']:.0f}",
            f"{r['pyav_span_decode_fps']:.0f}",
            "no decode" if cv is None else f"{cv:.0f}",
            f"{r['bytes_per_frame']:.0f}",
            f"{r['mean_abs_error']:.2f}",
        )
        print(" ".join(f"{x:>10}" for x in row))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
