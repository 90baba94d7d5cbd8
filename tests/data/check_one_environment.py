"""Check by hand that Flywheel and LeRobot 0.6.1 share one Python environment: in ONE process,
LeRobot loads datasets that Flywheel labeled, and Flywheel labels datasets that LeRobot wrote.

Never in CI (LeRobot 0.6 needs Python >= 3.12 and torch < 2.12; CI installs constraints.txt's
torch 2.13.0). The environment, from the repository root (Python 3.12 from pyenv here; PyPI
only):

    python3.12 -m venv /tmp/lerobot-flywheel && . /tmp/lerobot-flywheel/bin/activate
    pip install "lerobot[dataset]==0.6.1" -e .      # ONE command: see below
    pip check                                       # "No broken requirements found."
    HF_HUB_OFFLINE=1 python tests/data/check_one_environment.py /tmp/one-env

It resolves to LeRobot's torch 2.11.0 (pyproject.toml asks torch >= 2.11), Ray 2.60.0, numpy
2.2, PyAV 15, pandas 2.3, pyarrow 26. Install both in the same `pip install`: Flywheel added
afterwards into a LeRobot venv (`pip install -e .` alone) upgrades `packaging` to 26 through
Ray's `virtualenv`, which LeRobot 0.6.1 refuses (`packaging<26`; `pip check` says so).

What runs, all in this one process, in a fresh folder OUT:

1. Flywheel: `synth` (v3.0, AV1, 6 episodes) and `label` in place (Ray, a local cluster);
2. LeRobot's own writer (`LeRobotDataset.create` + `add_frame` + `save_episode` + `finalize`,
   its default AV1 encoder, two cameras, a `progress` column), then Flywheel's `label` of it;
3. Flywheel's `label` of a copy of LeRobot 0.6.1's tests/data/lerobot061_v30_h264;
4. LeRobot's `LeRobotDataset(..., video_backend="pyav")` loads each of the three labeled
   datasets; for every frame it must give the index, state, action and task text (the label
   Flywheel wrote) that Flywheel reads, and every camera pixel Flywheel decodes (round(x * 255)
   of LeRobot's floats, after checking they are integers). The labels must be more than one.

Exit 0 when all three match, 1 otherwise. The file name does not start with `test_`, so pytest
never collects it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def write_with_lerobot(root: Path, episodes: int = 4, size: int = 48) -> None:
    """A small v3.0 dataset written by LeRobot 0.6.1's own writer (its default codec: AV1)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    vector = {"dtype": "float32", "shape": (6,), "names": [f"joint_{i}" for i in range(6)]}
    camera = {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.state": vector,
        "action": vector,
        "observation.images.front": camera,
        "observation.images.wrist": camera,
        "progress": {"dtype": "float32", "shape": (1,), "names": None},
    }
    ds = LeRobotDataset.create("local/lerobot_written", 10, features, root=root)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        n = 12 + 3 * e
        for i in range(n):
            front = np.zeros((size, size, 3), np.uint8)
            front[..., 0] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
            front[4:12, (2 * i + 5 * e) % (size - 8) :][:, :8] = (40, 200, 90)
            wrist = np.full((size, size, 3), (20 * e + 7 * i) % 256, np.uint8)
            state = rng.normal(0, 10, 6).astype(np.float32)
            ds.add_frame(
                {
                    "observation.state": state,
                    "action": state + 1,
                    "observation.images.front": front,
                    "observation.images.wrist": wrist,
                    # a slower episode makes less progress per frame
                    "progress": np.array([(i + 1) / n * (1 - 0.1 * e)], np.float32),
                    "task": "pick the cube",
                }
            )
        ds.save_episode()
    ds.finalize()


def flywheel_reads(root: Path) -> list[dict]:
    """What Flywheel reads from a dataset, frame by frame (camera frames as uint8 arrays)."""
    from pipelines.dataset import LeRobotDataset

    ds = LeRobotDataset(root)
    items = []
    for e in ds.episode_indices:
        t = ds.read_episode(e)
        frames = {k: list(ds.iter_camera_frames(e, k)) for k in ds.video_keys}
        for i in range(t.num_rows):
            items.append(
                {
                    "index": t["index"][i].as_py(),
                    "state": t["observation.state"][i].as_py(),
                    "action": t["action"][i].as_py(),
                    "task": ds.tasks[t["task_index"][i].as_py()],
                    "frames": {k: v[i] for k, v in frames.items()},
                }
            )
    return items


def lerobot_matches(root: Path, want: list[dict]) -> bool:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    same = 0
    for i, item in enumerate(want):
        got = ds[i]
        ok = got["index"].item() == item["index"] and got["task"] == item["task"]
        ok &= np.allclose(got["observation.state"].numpy(), item["state"])
        ok &= np.allclose(got["action"].numpy(), item["action"])
        for key, frame in item["frames"].items():
            pixels = got[key].permute(1, 2, 0).numpy().astype(np.float64) * 255
            ok &= bool(np.abs(pixels - np.round(pixels)).max() < 1e-3)
            ok &= np.array_equal(np.round(pixels).astype(np.uint8), frame)
        same += bool(ok)
    labels = sorted({item["task"] for item in want})
    print(
        f"{root.name}: LeRobot {ds.meta.info.codebase_version}, {ds.num_episodes} episodes, "
        f"{same}/{len(want)} frames identical (LeRobot has {len(ds)}), labels {labels}"
    )
    return same == len(want) == len(ds) and len(labels) > 1


def main(out: Path) -> int:
    import av
    import lerobot
    import ray
    import torch

    from pipelines import label, synth
    from pipelines.dataset import V30

    print(
        f"Python {sys.version.split()[0]}, lerobot {lerobot.__version__}, torch "
        f"{torch.__version__}, ray {ray.__version__}, av {av.__version__}"
    )
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    quiet = lambda *a: None  # noqa: E731
    labeled = [out / "flywheel_synth", out / "lerobot_written", out / "lerobot061_v30_h264"]
    synth.run(synth.SynthConfig(str(labeled[0]), 6, seed=1, image_size=64, format=V30), quiet)
    write_with_lerobot(labeled[1])
    shutil.copytree(HERE / "lerobot061_v30_h264", labeled[2])
    for root in labeled:
        label.run(label.LabelConfig(dataset=str(root), threshold=30, mlflow=False), quiet)
    ok = [lerobot_matches(root, flywheel_reads(root)) for root in labeled]
    print("one environment:", "OK" if all(ok) else "FAILED")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/data/check_one_environment.py OUT")
    raise SystemExit(main(Path(sys.argv[1])))
