"""Write tests/data/lerobot061_v30_m100/: an SO-101 recording in LeRobot's -100..100 units,
written by LeRobot 0.6.1's own code, with the follower's calibration file LeRobot wrote.

Run by hand, never in CI (LeRobot 0.6 needs Python >= 3.12 and torch < 2.12), in the separate
venv that `make_lerobot_reference.py` describes:

    HF_HUB_OFFLINE=1 /tmp/h4-lerobot-venv/bin/python tests/data/make_lerobot_m100_recording.py

What LeRobot does here, as `lerobot-record --robot.type=so101_follower --robot.use_degrees=false`
would (without the serial port):

- `SO101Follower(config)` with `use_degrees=False` (body joints RANGE_M100_100, the gripper
  RANGE_0_100) and `HF_LEROBOT_CALIBRATION` pointing at a temporary folder: its
  `_save_calibration()` writes the calibration below where LeRobot 0.6.1 keeps it
  (`robots/so_follower/flywheel_m100.json`), copied to `lerobot061_v30_m100_calibration/`.
  Two motors have drive_mode 1 (LeRobot's own calibration writes 0; the formulas take either).
- The joints' raw positions (homed-frame counts, within each calibrated range and touching
  its limits) go through the follower's own bus normalization, `bus._normalize`, into
  `observation.state`; the action is the same through the leader's offsets (a few counts
  ahead).
- `LeRobotDataset.create` + `add_frame` + `save_episode` + `finalize`: 3 episodes of 24
  frames at 10 fps, one 32x32 camera `observation.images.front` in H.264.

The raw counts are kept in `lerobot061_v30_m100_raw.npz` (`state/<episode>`,
`action/<episode>`, int64, frames x 6, LeRobot's motor order) so that tests can check a
conversion against the degrees the arm itself reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "lerobot061_v30_m100"
CALIBRATION_OUT = HERE / "lerobot061_v30_m100_calibration"
RAW_OUT = HERE / "lerobot061_v30_m100_raw.npz"
ARM_ID = "flywheel_m100"
FPS, FRAMES, EPISODES, SIZE = 10, 24, 3, 32
TASK = "Grasp the cube"
# (id, drive_mode, homing_offset, range_min, range_max), as an SO-101 follower's
MOTORS = {
    "shoulder_pan": (1, 0, -1470, 758, 3292),
    "shoulder_lift": (2, 0, 157, 612, 3401),
    "elbow_flex": (3, 0, 1105, 882, 3124),
    "wrist_flex": (4, 1, -2012, 884, 3153),
    "wrist_roll": (5, 0, 1540, 128, 4002),
    "gripper": (6, 1, 1407, 2031, 3476),
}


def raw_trajectory(episode: int, rng: np.random.Generator) -> np.ndarray:
    """Frames x 6 raw counts inside each range; each episode touches both limits of some
    joint (LeRobot clips there: -100 / 100)."""
    t = np.linspace(0.0, 1.0, FRAMES)
    out = np.empty((FRAMES, len(MOTORS)), dtype=np.int64)
    for j, (_, _, _, low, high) in enumerate(MOTORS.values()):
        phase = rng.uniform(0, 2 * np.pi)
        share = 0.5 + 0.5 * np.sin(2 * np.pi * t * (1 + episode) / 2 + phase)
        if j == episode:  # this joint rests at its low limit, then reaches its high one
            share = np.clip(np.linspace(-0.2, 1.2, FRAMES), 0.0, 1.0)
        out[:, j] = np.round(low + share * (high - low)).astype(np.int64)
    return out


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_LEROBOT_CALIBRATION"] = str(Path(tmp) / "calibration")
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from lerobot.motors import MotorCalibration
        from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig

        robot = SO101Follower(SO101FollowerConfig(port="/dev/null", id=ARM_ID, use_degrees=False))
        calibration = {
            name: MotorCalibration(
                id=m[0], drive_mode=m[1], homing_offset=m[2], range_min=m[3], range_max=m[4]
            )
            for name, m in MOTORS.items()
        }
        robot.calibration = calibration
        robot._save_calibration()
        robot.bus.calibration = calibration
        written = Path(robot.calibration_fpath)
        print("LeRobot wrote the calibration to", written.relative_to(tmp))
        names = list(robot.bus.motors)
        assert names == list(MOTORS), names
        ids = [robot.bus.motors[n].id for n in names]

        def normalize(raw: np.ndarray) -> np.ndarray:
            rows = []
            for frame in raw:
                values = robot.bus._normalize({i: int(v) for i, v in zip(ids, frame, strict=True)})
                rows.append([values[i] for i in ids])
            return np.asarray(rows, dtype=np.float32)

        features = {
            "observation.state": {
                "dtype": "float32",
                "shape": (6,),
                "names": [f"{n}.pos" for n in names],
            },
            "action": {"dtype": "float32", "shape": (6,), "names": [f"{n}.pos" for n in names]},
            "observation.images.front": {
                "dtype": "video",
                "shape": (SIZE, SIZE, 3),
                "names": ["height", "width", "channels"],
            },
        }
        root = Path(tmp) / "dataset"
        ds = LeRobotDataset.create(
            "flywheel/lerobot061_v30_m100",
            FPS,
            features,
            root=root,
            robot_type="so101_follower",
            rgb_encoder=RGBEncoderConfig(vcodec="h264"),
        )
        rng = np.random.default_rng(0)
        raws = {}
        for e in range(EPISODES):
            raw_state = raw_trajectory(e, rng)
            raw_action = raw_state.copy()
            raw_action[:-1] = raw_state[1:]  # the leader is one frame ahead
            lows = np.array([m[3] for m in MOTORS.values()])
            highs = np.array([m[4] for m in MOTORS.values()])
            raw_action = np.clip(raw_action + rng.integers(-3, 4, raw_action.shape), lows, highs)
            raws[f"state/{e}"], raws[f"action/{e}"] = raw_state, raw_action
            state, action = normalize(raw_state), normalize(raw_action)
            for f in range(FRAMES):
                image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
                image[..., 0] = np.linspace(0, 255, SIZE, dtype=np.uint8)[None, :]
                x = (f * 2 + e * 5) % (SIZE - 8)
                image[8:16, x : x + 8] = (40, 200, 90)
                ds.add_frame(
                    {
                        "observation.state": state[f],
                        "action": action[f],
                        "observation.images.front": image,
                        "task": TASK,
                    }
                )
            ds.save_episode()
        ds.finalize()
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(root, OUT)
        shutil.rmtree(CALIBRATION_OUT, ignore_errors=True)
        shutil.copytree(Path(tmp) / "calibration", CALIBRATION_OUT)
        np.savez_compressed(RAW_OUT, **raws)
    reread = LeRobotDataset("flywheel/lerobot061_v30_m100", root=OUT, video_backend="pyav")
    states = np.stack([reread[i]["observation.state"].numpy() for i in range(len(reread))])
    print(f"{len(reread)} frames; state min {states.min(0).round(1)} max {states.max(0).round(1)}")
    print(json.dumps(json.loads(next(CALIBRATION_OUT.rglob("*.json")).read_text()))[:200])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
