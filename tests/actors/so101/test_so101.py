"""`actors.so101`: the shared robot config and flags, and the one arm builder (no Ray)."""

import numpy as np
import pytest

from actors.emulated_robot import EMULATED_CALIBRATION
from actors.feetech.calibration import save_calibration
from actors.so101 import (
    EMULATED_BUS,
    FollowerConfig,
    RobotConfig,
    RobotError,
    calibration_of,
    camera_sources,
    open_so101,
)
from pipelines.runtime.cli import JobParser
from pipelines.runtime.flags import add_flags, config_from_flags


def test_flags_build_the_robot_config():
    p = JobParser(prog="x")
    add_flags(p, RobotConfig)
    ns = p.parse_args(["--follower-port", "/dev/a", "--leader-id", "l", "--camera", "front=0"])
    cfg = config_from_flags(RobotConfig, ns)
    assert cfg == RobotConfig(follower_port="/dev/a", leader_id="l", camera=["front=0"])
    assert cfg.camera_sources() == {"observation.images.front": 0}
    follower_only = JobParser(prog="y")
    add_flags(follower_only, FollowerConfig)
    assert "--leader-port" not in follower_only.format_help()  # hidden, still read back
    assert follower_only.parse_args(["--leader-port", "p"]).leader_port == "p"


def test_camera_sources_and_calibrations(tmp_path):
    assert camera_sources(["wrist=/dev/video2", "observation.images.front=1"]) == {
        "observation.images.wrist": "/dev/video2",
        "observation.images.front": 1,
    }
    with pytest.raises(RobotError, match="expected NAME=SOURCE"):
        camera_sources(["front"])
    assert calibration_of(None, str(tmp_path), emulated=True) is EMULATED_CALIBRATION
    with pytest.raises(RobotError, match="which calibration"):
        calibration_of(None, str(tmp_path), emulated=False)
    with pytest.raises(RobotError, match="no calibration for arm 'f'"):
        calibration_of("f", str(tmp_path), emulated=False)
    save_calibration(EMULATED_CALIBRATION, "f", tmp_path)
    assert set(calibration_of("f", str(tmp_path), emulated=False)) == set(EMULATED_CALIBRATION)


def test_a_real_arm_needs_its_ports():
    with pytest.raises(RobotError, match="--follower-port and --leader-port"):
        open_so101(RobotConfig(follower_port="/dev/x"), emulated=False)


def test_the_emulated_workcell_in_this_process():
    arms = open_so101(RobotConfig(), emulated=True, image_size=32, leader=False, bus=EMULATED_BUS)
    try:
        assert arms.leader is None and arms.robot is not None
        assert set(arms.ports) == {"follower", "leader"}
        joints = arms.follower.read()
        assert joints.shape == (6,) and np.isfinite(joints).all()
        frame = arms.cameras["observation.images.front"].latest()[0]
        assert frame.shape == (32, 32, 3)
    finally:
        arms.close()
