"""Check by hand that LeRobot 0.6.1 loads the LeRobot v3.0 datasets Flywheel writes, exactly,
and that LeRobot 0.3.3 (what openpi and kai0 pin) loads the v2.1 datasets `flywheel convert`
writes, exactly.

Never in CI (LeRobot 0.6 needs Python >= 3.12 and torch < 2.12). Steps, one venv each:

    # 1. with the project's venv: write the datasets and what Flywheel reads from them
    python tests/data/check_lerobot_reads_flywheel.py make /tmp/lerocheck
    # 2. with the LeRobot 0.6.1 venv (see make_lerobot_reference.py for how it is built)
    . /work/lerobot-venv/bin/activate
    HF_HUB_OFFLINE=1 python tests/data/check_lerobot_reads_flywheel.py check /tmp/lerocheck
    # 3. with a LeRobot 0.3.3 venv (Python 3.12; it brings torch 2.7.1 and datasets 3.6.0).
    #    numpy 2.2: 0.3.3 needs it; PyAV < 14: its pyav backend is torchvision's VideoReader,
    #    which passes `metadata_errors` (gone in PyAV 14), though 0.3.3 asks for av >= 14.2
    #    pip install lerobot==0.3.3 numpy==2.2.6 && pip install "av<14"
    HF_HUB_OFFLINE=1 python tests/data/check_lerobot_reads_flywheel.py check21 /tmp/lerocheck

The datasets: `flywheel synth --format v3.0` with AV1 and with H.264 videos; the AV1 one
relabeled in place by `flywheel label`; episodes appended one by one by the `EpisodeRecorder`,
across two sessions, the second with tiny file-size limits so that every episode rolls over to
new data and video files; a progress-only dataset packed into many data files; and `flywheel
convert`'s v3.0 results: LeRobot 0.3.3's v2.1 dataset (tests/data) converted, LeRobot 0.6.1's
v3.0 one converted to v2.1 and back, and a v2.1 `flywheel synth` dataset converted. The v2.1
sets (`sets21/`, checked with LeRobot 0.3.3): LeRobot 0.6.1's v3.0 datasets (tests/data, and
the shared recording when present) converted to v2.1, outcomes on the H.264 one. For every
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
    from pipelines.dataset import V30, EpisodeRecorder
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
    converted(out)

    for folder, name in (("sets", "flywheel.json"), ("sets21", "flywheel21.json")):
        reference = {root.name: reference_of(root) for root in sorted((out / folder).iterdir())}
        (out / name).write_text(json.dumps(reference))
        print(folder, {name: len(items) for name, items in reference.items()})


def converted(out: Path) -> None:
    """`flywheel convert`'s results: v3.0 ones into sets/, v2.1 ones into sets21/."""
    from pipelines import synth
    from pipelines.dataset import LeRobotDataset, commit_staged, stage_episode_outcomes
    from pipelines.dataset.convert import convert_dataset

    here = Path(__file__).resolve().parent
    sets, sets21, work = out / "sets", out / "sets21", out / "work"
    sets21.mkdir()
    work.mkdir()
    quiet = lambda *a: None  # noqa: E731
    convert_dataset(here / "lerobot033_v21_av1", sets / "converted_lerobot033", "v3.0")
    h264 = Path(shutil.copytree(here / "lerobot061_v30_h264", work / "h264"))
    commit_staged(h264, stage_episode_outcomes(LeRobotDataset(h264), {0: True, 2: False}))
    convert_dataset(h264, sets21 / "converted_lerobot061_h264", "v2.1")
    convert_dataset(sets21 / "converted_lerobot061_h264", sets / "roundtrip_lerobot061", "v3.0")
    recording = here.parents[2] / "shared" / "datasets" / "lerobot061_v30_recording"
    if recording.is_dir():
        convert_dataset(recording, sets21 / "converted_lerobot061_recording", "v2.1")
    synth.run(
        synth.SynthConfig(str(work / "synth21"), 4, seed=3, image_size=48, format="v2.1"), quiet
    )
    convert_dataset(work / "synth21", sets / "converted_synth_v21", "v3.0")


def reference_of(root: Path) -> list[dict]:
    """What Flywheel reads from a dataset, frame by frame (camera frames as SHA-256)."""
    from pipelines.dataset import LeRobotDataset

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
    return items


def check(out: Path, folder: str = "sets", name: str = "flywheel.json") -> None:
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:  # LeRobot < 0.3
        from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    reference = json.loads((out / name).read_text())
    failed = 0
    for name, items in reference.items():
        ds = LeRobotDataset(f"local/{name}", root=out / folder / name, video_backend="pyav")
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


def check21(out: Path) -> None:
    """The v2.1 sets, with LeRobot 0.3.3."""
    check(out, "sets21", "flywheel21.json")


if __name__ == "__main__":
    {"make": make, "check": check, "check21": check21}[sys.argv[1]](Path(sys.argv[2]))
