"""`flywheel robot teleop`'s options are checked before the arms start; calibrations are durable."""

import pytest

from actors.feetech.calibration import MotorCalibration, calibration_path, save_calibration
from actors.so101 import record
from pipelines import robot


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fps", "0"], "--fps 0: must be a positive number"),
        (["--fps", "nan"], "--fps nan: must be a positive number"),
        (["--episode-time", "-1"], "--episode-time -1: must be a positive number"),
        (["--episodes", "0"], "--episodes 0: at least 1"),
        ("under a file", "is a file, not a folder"),
        ("in /proc", "inside /proc"),
        ("a file", "exists and is not a folder"),
    ],
)
def test_bad_options_are_one_line_before_the_arms_start(
    tmp_path, capsys, monkeypatch, args, message
):
    def never(*_a, **_k):
        raise AssertionError("the arms (or Ray) started")

    monkeypatch.setattr(record, "open_so101", never)
    monkeypatch.setattr(record, "connect", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out, extra = tmp_path / "out", args
    if args == "under a file":
        out, extra = blocker / "out", []
    elif args == "in /proc":
        out, extra = "/proc/flywheel-teleop-out", []
    elif args == "a file":
        out, extra = blocker, []
    assert robot.main(["teleop", str(out), "--sim", *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("flywheel robot teleop: error: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert blocker.read_text() == "mine"


def test_saving_a_calibration_fsyncs_its_folder(tmp_path, monkeypatch, fsyncs):
    synced = fsyncs
    cal = {
        "gripper": MotorCalibration(id=6, drive_mode=0, homing_offset=1, range_min=0, range_max=9)
    }
    path = save_calibration(cal, "arm1", tmp_path / "cals")
    assert path == calibration_path("arm1", tmp_path / "cals") and path.exists()
    assert synced[-1] == str(tmp_path / "cals")  # after the rename: the new name is durable
