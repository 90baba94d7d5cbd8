"""`flywheel robot` reads and writes calibrations where LeRobot keeps them (no Ray)."""

import json
import shutil
from pathlib import Path

import pytest

from actors.emulated_robot import EMULATED_CALIBRATION
from actors.feetech.calibration import save_arm_calibration
from actors.so101 import RobotConfig, RobotError, calibration_of
from pipelines import robot
from pipelines.dataset import calibration as cal

DATA = Path(__file__).resolve().parents[2] / "data"
FIELDS = ["id", "drive_mode", "homing_offset", "range_min", "range_max"]  # LeRobot's order


@pytest.fixture
def lerobot_root(monkeypatch, tmp_path):
    root = tmp_path / "lerobot-calibration"
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(root))
    monkeypatch.setattr(cal, "FLYWHEEL_CALIBRATION_DIR", tmp_path / "flywheel-calibration")
    return root


def test_calibrate_writes_lerobots_files_and_ping_reads_them(lerobot_root, capsys):
    assert robot.main(["calibrate", "--arm-id", "arm1"]) == 0
    written = [lerobot_root / "robots/so_follower/arm1.json"]
    written.append(lerobot_root / "robots/so101_follower/arm1.json")
    out = capsys.readouterr().out
    assert all(str(p) in out for p in written)
    data = json.loads(written[0].read_text())
    assert written[1].read_text() == written[0].read_text()
    assert list(data) == list(EMULATED_CALIBRATION)
    assert all(list(motor) == FIELDS for motor in data.values())
    assert robot.main(["ping", "--arm-id", "arm1"]) == 0
    assert capsys.readouterr().out.count(" deg") == 5
    assert robot.main(["calibrate", "--arm-id", "lead", "--leader"]) == 0
    for kind in ("so_leader", "so101_leader"):
        assert (lerobot_root / "teleoperators" / kind / "lead.json").is_file()
    assert not (lerobot_root / "robots/so_follower/lead.json").exists()
    code = robot.main(["ping", "--arm-id", "lead"])  # a leader's id is not a follower's
    err = capsys.readouterr().err
    assert code == 2 and "no calibration for arm 'lead' (follower; looked for" in err
    assert len(err.strip().splitlines()) == 1
    assert robot.main(["ping", "--arm-id", "lead", "--leader"]) == 0


def test_an_arm_lerobot_calibrated_needs_no_second_calibration(lerobot_root):
    shutil.copytree(DATA / "lerobot061_v30_m100_calibration", lerobot_root)
    config = RobotConfig(follower_id="flywheel_m100", leader_id="flywheel_m100")
    found = calibration_of(config.follower_id, config.calibrations, emulated=False)
    assert found["wrist_flex"].drive_mode == 1 and found["shoulder_pan"].range_max == 3292
    with pytest.raises(RobotError, match="no calibration for arm 'flywheel_m100' \\(leader"):
        calibration_of(config.leader_id, config.calibrations, emulated=False, role="leader")
    with pytest.raises(RobotError, match="arm id 'a/b': a plain name"):
        calibration_of("a/b", None, emulated=False)


def test_saving_where_lerobot_reads_is_atomic_and_fsyncs_each_folder(lerobot_root, fsyncs):
    paths = save_arm_calibration(EMULATED_CALIBRATION, "follower", "f1")
    assert [p.parent.name for p in paths] == ["so_follower", "so101_follower"]
    for p in paths:
        assert str(p.parent) in fsyncs  # the rename made durable
        assert not [q for q in p.parent.iterdir() if q.name.startswith(".")]  # no temporaries
    assert cal.read_calibration_file(paths[0]) == EMULATED_CALIBRATION
