"""Check by hand that LeRobot 0.6.1 loads the LeRobot v3.0 datasets Flywheel writes, exactly.

Never in CI (LeRobot 0.6 needs Python >= 3.12 and torch < 2.12). Two steps, two venvs:

    # 1. with the project's venv: write the datasets and what Flywheel reads from them
    python tests/data/check_lerobot_reads_flywheel.py make /tmp/lerocheck
    # 2. with the LeRobot venv (see make_lerobot_reference.py for how it is built)
    . /work/lerobot-venv/bin/activate
    HF_HUB_OFFLINE=1 python tests/data/check_lerobot_reads_flywheel.py check /tmp/lerocheck

The datasets: `flywheel synth --format v3.0` with AV1 and with H.264 videos; the AV1 one
relabeled in place by `flywheel label`; episodes appended one by one by the `EpisodeRecorder`,
across two sessions, the second with tiny file-size limits so that every episode rolls over to
new data and video files; and a progress-only dataset packed into many data files. For every
frame, LeRobot's `LeRobotDataset(..., video_backend="pyav")[i]` must give the state, action and
task text Flywheel reads and every camera pixel Flywheel decodes (compared as SHA-256 of the
uint8 frames, round(x * 255) of LeRobot's floats after checking they are integers).

The file name does not start with `test_`, so pytest never collects it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def _sha(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()


def make(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from pipelines import label, synth
    from pipelines.dataset import V30, EpisodeRecorder, LeRobotDataset
    from pipelines.labeling.progress_dataset import make_progress_dataset

    shutil.rmtree(out, ignore_errors=True)
    sets = out / "sets"
    sets.mkdir(parents=True)
    quiet = lambda *a: None  # noqa: E731
    synth.run(
        synth.SynthConfig(str(sets / "synth_av1"), 6, seed=1, image_size=64, format=V30), quiet
    )
    synth.run(
        synth.SynthConfig(
            str(sets / "synth_h264"), 4, seed=2, image_size=48, format=V30, vcodec="h264"
        ),
        quiet,
    )
    shutil.copytree(sets / "synth_av1", sets / "labeled")
    label.run(label.LabelConfig(dataset=str(sets / "labeled"), threshold=30, mlflow=False), quiet)

    recorded = sets / "recorded"

    def record(episodes: range) -> None:
        rec = EpisodeRecorder(
            recorded,
            fps=10,
            task="wave",
            joint_names=["a", "b"],
            cameras={"observation.images.cam": (32, 32)},
            version=V30,
        )
        for e in episodes:
            rec.begin()
            for i in range(6 + e):
                img = np.full((32, 32, 3), (30 * e + 9 * i) % 256, np.uint8)
                img[: i + 1, :5] = 255
                pose = np.array([i, e], np.float32)
                rec.add(pose, pose[::-1], {"observation.images.cam": img})
            rec.save(success=e % 2 == 0)

    record(range(2))
    info = json.loads((recorded / "meta" / "info.json").read_text())
    info.update(data_files_size_in_mb=1e-4, video_files_size_in_mb=1e-4)
    (recorded / "meta" / "info.json").write_text(json.dumps(info))
    record(range(2, 5))
    make_progress_dataset(sets / "progress", episodes=30, version=V30, data_files_size_in_mb=0.02)

    reference = {}
    for root in sorted(sets.iterdir()):
        ds = LeRobotDataset(root)
        items = []
        for e in ds.episode_indices:
            t = ds.read_episode(e)
            frames = {k: [_sha(f) for f in ds.iter_camera_frames(e, k)] for k in ds.video_keys}
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
        reference[root.name] = items
    (out / "flywheel.json").write_text(json.dumps(reference))
    print({name: len(items) for name, items in reference.items()})


def check(out: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    reference = json.loads((out / "flywheel.json").read_text())
    failed = 0
    for name, items in reference.items():
        ds = LeRobotDataset(f"local/{name}", root=out / "sets" / name, video_backend="pyav")
        same = 0
        for i, want in enumerate(items):
            got = ds[i]
            ok = got["index"].item() == want["index"] and got["task"] == want["task"]
            ok &= np.allclose(got["observation.state"].numpy(), want["state"])
            ok &= np.allclose(got["action"].numpy(), want["action"])
            for key, digest in want["frames"].items():
                pixels = got[key].permute(1, 2, 0).numpy() * 255
                ok &= bool(np.abs(pixels - np.round(pixels)).max() < 1e-3)
                ok &= _sha(np.round(pixels).astype(np.uint8)) == digest
            same += bool(ok)
        failed += same != len(items) or len(ds) != len(items)
        print(
            f"{name}: {ds.meta.info['codebase_version']}, {ds.num_episodes} episodes, "
            f"{same}/{len(items)} frames identical (LeRobot has {len(ds)})"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](Path(sys.argv[2]))
