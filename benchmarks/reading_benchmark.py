"""Benchmark of reading a LeRobot v3.0 AV1 dataset: Flywheel's reader against the readers LeRobot
users have (not a test). Decoded camera frames/s, in the one Python 3.12 environment that holds
`lerobot[dataset]==0.6.1` and Flywheel (tests/data/check_one_environment.py says how to build
it; torchcodec also needs a system FFmpeg 4-8: `apt-get install libavdevice59` on Debian 12).

    HF_HUB_OFFLINE=1 python benchmarks/reading_benchmark.py [--data DIR] [--repeats 3]
        [--samples 120] [--sequential-episodes 20,10] [--readers ...] [--out FILE]

The datasets (made once in DIR, by LeRobot 0.6.1's own writer with its defaults: SVT-AV1, g=2,
crf 30, yuv420p; 30 fps; cameras `front` and `wrist`, a smooth textured scene with a moving
disc): `av1_128` (50 episodes of 60 frames, 128x128) and `av1_480x640` (50 episodes of 24
frames, 480x640).

Two access patterns, camera frames counted (an item of two cameras is two frames):

- **sequential**: whole episodes in order, every camera, with the episode's table (what labeling
  and estimation do); the first N episodes (`--sequential-episodes`, per size);
- **random**: `--samples` (episode, frame) pairs drawn uniformly, the same for every reader,
  each camera decoded at that frame (what a training loader does).

Readers:

- **flywheel**: `pipelines.dataset.LeRobotDataset`: `read_episode` + `iter_camera_frames` per
  camera; random: `pipelines.dataset.frames.FrameReader.frame` (files kept open, one decoder
  thread, a seek to the key frame at or before the frame);
- **flywheel_stream** (random only): `iter_video_frames(file, start=i, count=1,
  from_timestamp=...)`, the whole-episode stream used for one frame (a file opened per frame,
  a frame-threaded decoder, LeRobot's seek with a tick of margin);
- **lerobot_pyav**, **lerobot_torchcodec**: LeRobot 0.6.1's `LeRobotDataset(...,
  video_backend=..., return_uint8=True)[i]` (uint8 as Flywheel gives; LeRobot decodes the two
  cameras in two threads); sequential reads index the episode's items in order;
- **lerobot_pyav_batch**, **lerobot_torchcodec_batch** (sequential only): LeRobot's own
  `decode_video_frames` called once per episode and camera with all the episode's timestamps
  (LeRobot's decoder without its per-item indexing);
- **ray_read_lerobot**: Ray 2.60's `ray.data.read_lerobot(root, episodes=...,
  read_granularity="episode")` (torchcodec), every batch iterated; random: the same over the
  whole dataset with `local_shuffle_buffer_size` (Ray Data has no random access: a training loop
  shuffles a full pass), its rate being all frames over the pass's time. It runs Ray tasks on
  all cores; the others run in this one process.

Figures: the median of `--repeats` runs and their spread (min-max), the readers' runs taken in
turn, with the 1-minute load average around each run: the machine may be shared (say so when
quoting them). Also frames per CPU-second of this process (all its threads), steadier than
wall-clock figures on a busy machine (not for Ray, whose workers are other processes). Written
to benchmarks/results/reading.json; two Markdown tables are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.dataset import LeRobotDataset, iter_video_frames  # noqa: E402
from pipelines.dataset.frames import FrameReader  # noqa: E402

FPS = 30
CAMERAS = ("front", "wrist")
# name: (height, width, episodes, frames per episode)
DATASETS = {"av1_128": (128, 128, 50, 60), "av1_480x640": (480, 640, 50, 24)}
READERS = (
    "flywheel",
    "flywheel_stream",
    "lerobot_pyav",
    "lerobot_torchcodec",
    "lerobot_pyav_batch",
    "lerobot_torchcodec_batch",
    "ray_read_lerobot",
)
SEQUENTIAL_ONLY = {"lerobot_pyav_batch", "lerobot_torchcodec_batch"}
RANDOM_ONLY = {"flywheel_stream"}


# ----------------------------------------------------------------------------- the datasets


def textures(height: int, width: int, seed: int) -> list[np.ndarray]:
    """A still, smooth random texture per camera (a scene's detail, unlike a flat gradient)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (len(CAMERAS), height // 16 + 1, width // 16 + 1, 3), np.uint8)
    return [cv2.resize(s, (width, height), interpolation=cv2.INTER_CUBIC) for s in small]


def frame(texture: np.ndarray, episode: int, t: int) -> np.ndarray:
    """The texture drifting sideways, a moving disc over it."""
    height, width = texture.shape[:2]
    image = np.roll(texture, (episode * 7 + t) % width, axis=1).copy()
    yy, xx = np.ogrid[:height, :width]
    cy = height / 2 + height / 4 * np.sin((t + episode) / 9)
    cx = width / 2 + width / 4 * np.cos((t + 3 * episode) / 9)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) / 8) ** 2] = (230, 60, 40)
    return image


def make_dataset(root: Path, height: int, width: int, episodes: int, length: int) -> None:
    """A v3.0 dataset written by LeRobot's own writer with its default (AV1) encoder."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset as LeRobotWriter

    vector = {"dtype": "float32", "shape": (6,), "names": [f"joint_{i}" for i in range(6)]}
    camera = {
        "dtype": "video",
        "shape": (height, width, 3),
        "names": ["height", "width", "channels"],
    }
    features = {"observation.state": vector, "action": vector}
    features.update({f"observation.images.{c}": camera for c in CAMERAS})
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    ds = LeRobotWriter.create(f"local/{root.name}", FPS, features, root=tmp, image_writer_threads=2)
    scenes = textures(height, width, seed=height)
    for e in range(episodes):
        for t in range(length):
            pose = np.sin(np.arange(6) + (t + e) / 10).astype(np.float32) * 30
            item = {"observation.state": pose, "action": pose + 1, "task": "pick the cube"}
            for c, texture in zip(CAMERAS, scenes, strict=True):
                item[f"observation.images.{c}"] = frame(texture, e + 100 * CAMERAS.index(c), t)
            ds.add_frame(item)
        ds.save_episode()
    ds.finalize()
    tmp.rename(root)


# ----------------------------------------------------------------------------- the readers


def flywheel_sequential(ds: LeRobotDataset, episodes: list[int]) -> int:
    frames = 0
    for e in episodes:
        ds.read_episode(e)
        for key in ds.video_keys:
            frames += sum(1 for _ in ds.iter_camera_frames(e, key))
    return frames


def flywheel_random(reader: FrameReader, samples: list[tuple[int, int]]) -> int:
    frames = 0
    for e, i in samples:
        for key in reader.dataset.video_keys:
            frames += reader.frame(e, key, i).ndim == 3
    return frames


def flywheel_stream_random(ds: LeRobotDataset, samples: list[tuple[int, int]]) -> int:
    frames = 0
    for e, i in samples:
        for key in ds.video_keys:
            codec = ds.features[key]["info"]["video.codec"]
            start, _ = ds.video_span(e, key)
            for _ in iter_video_frames(
                ds.video_file(e, key), i, 1, codec, from_timestamp=start, fps=ds.fps
            ):
                frames += 1
    return frames


def lerobot_dataset(root: Path, backend: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset as LeRobotReader

    return LeRobotReader(f"local/{root.name}", root=root, video_backend=backend, return_uint8=True)


def lerobot_items(ds, indices: list[int]) -> int:
    keys = ds.meta.video_keys
    frames = 0
    for i in indices:
        item = ds[i]
        frames += sum(int(item[k].ndim == 3) for k in keys)
    return frames


def lerobot_batch(ds, episodes: list[int], backend: str) -> int:
    """LeRobot's decoder, once per episode and camera, with all the episode's timestamps."""
    from lerobot.datasets.video_utils import decode_video_frames

    frames = 0
    for e in episodes:
        ep = ds.meta.episodes[e]
        length = ep["length"]
        for key in ds.meta.video_keys:
            start = ep[f"videos/{key}/from_timestamp"]
            stamps = [start + t / ds.fps for t in range(length)]
            path = ds.root / ds.meta.get_video_file_path(e, key)
            decoded = decode_video_frames(path, stamps, 1e-4, backend, return_uint8=True)
            frames += decoded.shape[0]
    return frames


def episode_items(ds, episodes: list[int]) -> list[int]:
    """Dataset item indices of the episodes' frames, in order."""
    out = []
    for e in episodes:
        ep = ds.meta.episodes[e]
        out += range(ep["dataset_from_index"], ep["dataset_to_index"])
    return out


def ray_frames(root: Path, episodes: list[int] | None, shuffle: bool) -> int:
    import ray

    ds = ray.data.read_lerobot(str(root), episodes=episodes, read_granularity="episode")
    keys = [f"observation.images.{c}" for c in CAMERAS]
    frames = 0
    for batch in ds.iter_batches(
        batch_size=32, batch_format="numpy", local_shuffle_buffer_size=256 if shuffle else None
    ):
        frames += sum(len(batch[k]) for k in keys)
    return frames


# ----------------------------------------------------------------------------- measuring


def timed(fn) -> dict:
    """One run: wall-clock and this process's CPU time (all its threads; Ray's workers are
    other processes, so not for Ray), and the 1-minute load average before and after."""
    before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    frames = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "load": [round(before, 1), round(os.getloadavg()[0], 1)],
    }


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "runs": [round(x, 1) for x in values],
    }


def measure(reader: str, root: Path, pattern: str, episodes: list[int], samples) -> callable:
    """A function that does one run of `reader` on `pattern` and returns its frame count."""
    # every reader's dataset is opened once, outside the timed runs (as LeRobot's, whose
    # torchcodec decoders stay cached from one run to the next; FrameReader's files too)
    if reader == "flywheel":
        ds = LeRobotDataset(root)
        if pattern == "sequential":
            return lambda: flywheel_sequential(ds, episodes)
        frame_reader = FrameReader(ds)
        return lambda: flywheel_random(frame_reader, samples)
    if reader == "flywheel_stream":
        ds = LeRobotDataset(root)
        return lambda: flywheel_stream_random(ds, samples)
    if reader == "ray_read_lerobot":
        if pattern == "sequential":
            return lambda: ray_frames(root, episodes, shuffle=False)
        return lambda: ray_frames(root, None, shuffle=True)
    backend = "torchcodec" if "torchcodec" in reader else "pyav"
    ds = lerobot_dataset(root, backend)
    if reader.endswith("_batch"):
        return lambda: lerobot_batch(ds, episodes, backend)
    if pattern == "sequential":
        indices = episode_items(ds, episodes)
    else:
        starts = {e: ds.meta.episodes[e]["dataset_from_index"] for e, _ in samples}
        indices = [starts[e] + i for e, i in samples]
    return lambda: lerobot_items(ds, indices)


def available(reader: str) -> str | None:
    """Why `reader` cannot run here, or None."""
    try:
        if "torchcodec" in reader or reader == "ray_read_lerobot":
            import torchcodec.decoders  # noqa: F401  (loads the system FFmpeg)
        if reader.startswith("lerobot"):
            import lerobot  # noqa: F401
        if reader == "ray_read_lerobot":
            import ray.data  # noqa: F401
    except Exception as e:  # torchcodec raises RuntimeError when no FFmpeg library loads
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("lerobot", "torch", "torchcodec", "av", "ray", "numpy", "pyarrow"):
        try:
            out[name] = __import__(name).__version__
        except Exception as e:
            out[name] = f"unavailable ({type(e).__name__})"
    return out


def table(results: list[dict], sizes: list[str], metric: str) -> str:
    """A Markdown table of `metric` (frames_per_s or frames_per_cpu_s): median (min-max)."""
    cells: dict[tuple[str, str, str], str] = {}
    for r in results:
        f = r.get(metric)
        text = f"{f['median']:.0f} ({f['min']:.0f}-{f['max']:.0f})" if f else r.get("skipped", "")
        cells[(r["reader"], r["size"], r["pattern"])] = text
    columns = [(s, p) for s in sizes for p in ("sequential", "random")]
    lines = [
        "| reader | " + " | ".join(f"{s} {p}" for s, p in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for reader in dict.fromkeys(r["reader"] for r in results):
        row = [cells.get((reader, s, p)) or "-" for s, p in columns]
        lines.append(f"| {reader} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def ratios(results: list[dict], metric: str) -> dict:
    """Flywheel's median over the fastest other reader's, per size and pattern."""
    out = {}
    for size in dict.fromkeys(r["size"] for r in results):
        for pattern in ("sequential", "random"):
            rows = [r for r in results if (r["size"], r["pattern"]) == (size, pattern)]
            medians = {r["reader"]: r[metric]["median"] for r in rows if r.get(metric)}
            ours = medians.pop("flywheel", None)
            medians.pop("flywheel_stream", None)
            if ours and medians:
                name = max(medians, key=medians.get)
                out[f"{size} {pattern}"] = {
                    "flywheel_over_fastest": round(ours / medians[name], 2),
                    "fastest_other": name,
                }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/tmp/flywheel-reading-benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=120, help="random (episode, frame) pairs")
    ap.add_argument("--sequential-episodes", default="20,10", help="per dataset, in order")
    ap.add_argument("--sizes", default=",".join(DATASETS))
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reading.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = Path(args.data)
    sizes = args.sizes.split(",")
    first = dict(zip(DATASETS, (int(x) for x in args.sequential_episodes.split(",")), strict=True))
    readers = args.readers.split(",")
    for name in sizes:
        if not (data / name).is_dir():
            print(f"writing {data / name} with LeRobot's writer ...", file=sys.stderr)
            data.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            make_dataset(data / name, *DATASETS[name])
            print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if "ray_read_lerobot" in readers:
        import ray

        # a cluster of its own ("local"), never one another process left running
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
    missing = {r: available(r) for r in readers}
    results = []
    for name in sizes:
        height, width, n_episodes, length = DATASETS[name]
        size = f"{height}x{width}"
        rng = np.random.default_rng(0)
        samples = [
            (int(rng.integers(n_episodes)), int(rng.integers(length))) for _ in range(args.samples)
        ]
        episodes = list(range(first[name]))
        # every reader's run r before any run r + 1: a change of load hits all of them alike
        todo = []
        for pattern in ("sequential", "random"):
            for reader in readers:
                if reader in (SEQUENTIAL_ONLY if pattern == "random" else RANDOM_ONLY):
                    continue
                row = {"reader": reader, "size": size, "pattern": pattern, "frames_per_s": None}
                results.append(row)
                if missing[reader]:
                    row["skipped"] = missing[reader]
                else:
                    todo.append((row, measure(reader, data / name, pattern, episodes, samples)))
        runs = {id(row): [] for row, _ in todo}
        for r in range(args.repeats):
            for row, run in todo:
                runs[id(row)].append(timed(run))
                done = runs[id(row)][-1]
                print(
                    f"{size} {row['pattern']:10s} {row['reader']:26s} run {r + 1}: "
                    f"{done['frames'] / done['wall_s']:7.1f} frames/s, load {done['load']}",
                    file=sys.stderr,
                )
        for row, _ in todo:
            done = runs[id(row)]
            row["frames"] = done[0]["frames"]
            row["frames_per_s"] = spread([d["frames"] / d["wall_s"] for d in done])
            if row["reader"] != "ray_read_lerobot":
                row["frames_per_cpu_s"] = spread([d["frames"] / d["cpu_s"] for d in done])
            row["load_average_before_after"] = [d["load"] for d in done]
    report = {
        "benchmark": "decoded camera frames/s reading LeRobot v3.0 AV1 datasets",
        "machine": {"cpus": os.cpu_count(), "machine": platform.machine(), **versions()},
        "datasets": {
            n: {
                "size": f"{DATASETS[n][0]}x{DATASETS[n][1]}",
                "episodes": DATASETS[n][2],
                "frames_per_episode": DATASETS[n][3],
                "cameras": list(CAMERAS),
                "fps": FPS,
                "writer": "LeRobot 0.6.1 LeRobotDataset.create (libsvtav1, g=2, crf 30)",
                "sequential_episodes": first[n],
            }
            for n in sizes
        },
        "repeats": args.repeats,
        "random_samples": args.samples,
        "results": results,
        "flywheel_over_fastest_other": {
            "wall": ratios(results, "frames_per_s"),
            "cpu": ratios(results, "frames_per_cpu_s"),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    shown = [f"{DATASETS[n][0]}x{DATASETS[n][1]}" for n in sizes]
    print("Decoded frames/s, wall clock:\n")
    print(table(results, shown, "frames_per_s"))
    print("\nDecoded frames per CPU-second of this process (not Ray's workers):\n")
    print(table(results, shown, "frames_per_cpu_s"))
    print("\n" + json.dumps(report["flywheel_over_fastest_other"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
