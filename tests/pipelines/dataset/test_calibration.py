"""`pipelines.dataset.calibration`: LeRobot's calibration files, where LeRobot keeps them."""

import json
import os
import shutil
from pathlib import Path

import pytest

from pipelines.dataset import DatasetError
from pipelines.dataset import calibration as cal

DATA = Path(__file__).resolve().parents[2] / "data"
LEROBOT_WROTE = DATA / "lerobot061_v30_m100_calibration"  # LeRobot 0.6.1's own folder layout


@pytest.fixture
def no_hf_env(monkeypatch, tmp_path):
    for name in ("HF_LEROBOT_CALIBRATION", "HF_LEROBOT_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cal, "FLYWHEEL_CALIBRATION_DIR", tmp_path / "home/.cache/flywheel/cal")
    return tmp_path


def test_the_root_follows_lerobots_environment(no_hf_env, monkeypatch):
    home = no_hf_env / "home"
    assert cal.lerobot_calibration_root() == home / ".cache/huggingface/lerobot/calibration"
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert cal.lerobot_calibration_root() == Path("/x/huggingface/lerobot/calibration")
    monkeypatch.setenv("HF_HOME", "/hf")
    assert cal.lerobot_calibration_root() == Path("/hf/lerobot/calibration")
    monkeypatch.setenv("HF_LEROBOT_HOME", "/lr")
    assert cal.lerobot_calibration_root() == Path("/lr/calibration")
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", "/c")
    assert cal.lerobot_calibration_root() == Path("/c")
    assert cal.lerobot_calibration_files("leader", "l1") == [
        Path("/c/teleoperators/so_leader/l1.json"),
        Path("/c/teleoperators/so101_leader/l1.json"),
    ]


def test_a_calibration_lerobot_wrote_is_found_by_its_id(no_hf_env, monkeypatch):
    root = no_hf_env / "lerobot-cal"
    shutil.copytree(LEROBOT_WROTE, root)
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(root))
    found = cal.find_calibration_file("follower", "flywheel_m100")
    assert found == root / "robots/so_follower/flywheel_m100.json"
    motors = cal.load_calibration_option("flywheel_m100", "--calibration")
    assert motors["elbow_flex"] == cal.MotorCalibration(3, 0, 1105, 882, 3124)
    assert cal.load_calibration_option(str(found), "--calibration") == motors  # a file
    assert cal.find_calibration_file("leader", "flywheel_m100") is None
    # an earlier LeRobot's folder (so101_follower), written later, wins
    older = root / "robots/so101_follower/flywheel_m100.json"
    older.parent.mkdir(parents=True)
    data = json.loads(found.read_text())
    data["gripper"]["range_max"] = 3000
    older.write_text(json.dumps(data))
    os.utime(older, ns=(found.stat().st_mtime_ns + 10**9,) * 2)
    assert cal.find_calibration_file("follower", "flywheel_m100") == older
    # Flywheel's former folder, for arms calibrated before
    legacy = cal.FLYWHEEL_CALIBRATION_DIR / "old_arm.json"
    legacy.parent.mkdir(parents=True)
    shutil.copy(found, legacy)
    assert cal.find_calibration_file("follower", "old_arm") == legacy
    assert cal.find_calibration_file("follower", "old_arm", str(root)) is None  # a folder given


def test_bad_calibrations_are_one_line_errors(no_hf_env, monkeypatch):
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(no_hf_env / "empty"))
    good = json.loads(next(LEROBOT_WROTE.rglob("*.json")).read_text())
    cases = [
        ("[]", "not a calibration"),
        ("{", "unreadable calibration"),
        (json.dumps({**good, "gripper": {"id": 6}}), "motor 'gripper' has no 'drive_mode'"),
        (
            json.dumps({**good, "gripper": {**good["gripper"], "range_min": "0"}}),
            "motor 'gripper': range_min is '0', not an integer",
        ),
        (
            json.dumps({**good, "gripper": {**good["gripper"], "range_max": 0}}),
            "motor 'gripper': empty range",
        ),
    ]
    for text, message in cases:
        path = no_hf_env / "bad.json"
        path.write_text(text)
        with pytest.raises(DatasetError) as e:
            cal.read_calibration_file(path)
        assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="--calibration nope: neither a calibration file nor"):
        cal.load_calibration_option("nope", "--calibration")
    with pytest.raises(DatasetError, match="--calibration /no/such.json: no such calibration"):
        cal.load_calibration_option("/no/such.json", "--calibration")
    with pytest.raises(DatasetError, match="arm id '../x': a plain name"):
        cal.find_calibration_file("follower", "../x")
