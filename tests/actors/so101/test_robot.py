"""`flywheel robot` against the emulated arms, and teleoperation on Ray."""

import threading

import numpy as np
import pytest

from actors.emulated_robot import EMULATED_CALIBRATION, REPLY_TIMEOUT_MS
from actors.feetech.calibration import Normalizer, load_calibration
from pipelines import robot
from pipelines.dataset import LeRobotDataset
from tests.helpers import wait_until


def test_ping_sim(capsys):
    assert robot.main(["ping"]) == 0
    out = capsys.readouterr().out
    assert out.count("model 777") == 6
    assert "shoulder_pan" in out and "gripper" in out and "%" in out


def test_calibrate_sim_round_trip(tmp_path, capsys):
    assert robot.main(["calibrate", "--arm-id", "arm1", "--calibration-dir", str(tmp_path)]) == 0
    assert "saved to" in capsys.readouterr().out
    cal = load_calibration("arm1", tmp_path)
    assert set(cal) == set(EMULATED_CALIBRATION)
    # the recorded calibration reads the emulated arm the same as the known one (homed frame)
    mine, known = Normalizer(cal), Normalizer(EMULATED_CALIBRATION)
    for name, m in cal.items():
        raw = (m.range_min + m.range_max) // 2 + 100
        a = mine.normalize({name: raw - m.homing_offset})[name]
        b = known.normalize({name: raw})[name]
        assert a == pytest.approx(b, abs=1.0 if name != "gripper" else 0.5), name


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    code = robot.main(["teleop", str(tmp_path / "x"), "--follower-port", "/dev/ttyNOPE"])
    assert code == 2 and "give both --follower-port and --leader-port" in capsys.readouterr().err
    code = robot.main(["ping", "--port", "/dev/ttyNOPE"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "ttyNOPE" in err
    code = robot.main(["teleop", str(tmp_path / "x"), "--sim", "--camera", "front"])
    assert code == 2 and "--camera 'front': expected NAME=SOURCE" in capsys.readouterr().err
    code = robot.main(["teleop", str(tmp_path / "x"), "--sim", "--vcodec", "vp9"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--vcodec: video codec 'vp9': one of av1, h264, mpeg4" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.usefixtures("ray_cluster")
def test_teleop_sim_records_a_readable_dataset(tmp_path, capsys):
    out = tmp_path / "teleop"
    # An episode ends when the simulator sees the cube grasped; the time limit is only a
    # liveness bound, generous enough for the slowest machine.
    argv = ["teleop", out, "--episodes", 2, "--episode-time", 300]
    assert robot.main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    ds = LeRobotDataset(out)
    assert ds.info["total_episodes"] == 2 and ds.fps == 30 and ds.version == "v3.0"
    assert ds.features["observation.state"]["units"] == ["degrees"] * 5 + ["range_0_100"]
    assert set(ds.video_keys) == {"observation.images.front", "observation.images.wrist"}
    assert {ds.features[k]["info"]["video.codec"] for k in ds.video_keys} == {"av1"}
    assert not ds.missing()
    successes = 0
    for ep in ds.episode_indices:
        t = ds.read_episode(ep)
        n = t.num_rows
        # A real episode, not one cut short: the follower moves only toward where the hand put
        # the leader, about 5 mm of tool travel per hand step, so a grasp takes over 20 ticks
        # however slowly the loop runs (30 Hz on a quiet machine: about 3x as many).
        assert n == ds.episodes[ep]["length"] > 10
        assert t["frame_index"].to_pylist() == list(range(n))
        for key in ds.video_keys:  # v3.0 (the default): the episode's span of the shared file
            assert np.stack(list(ds.iter_camera_frames(ep, key))).shape == (n, 128, 128, 3)
        successes += int(t["next.reward"].to_numpy()[-1] == 1.0)
        state = np.stack(t["observation.state"].to_numpy(zero_copy_only=False))
        action = np.stack(t["action"].to_numpy(zero_copy_only=False))
        assert state.shape == action.shape == (n, 6)
        # the follower followed the leader: late in the episode state ~ earlier actions
        assert np.abs(state[-1, :5] - action[-5, :5]).max() < 15  # the gripper is on the cube
    assert successes == 2, printed  # the simulated hand grasps the cube in both episodes
    assert ds.outcomes == {0: True, 1: True}  # the success watcher's s, as episode_success


@pytest.mark.usefixtures("ray_cluster")
def test_killed_follower_actor_is_restarted_and_recording_continues(tmp_path):
    import ray

    from actors.arm import JOINTS, follower_actor, leader_actor
    from actors.camera import RobotCamera
    from actors.emulated_robot import EmulatedSO101
    from actors.teleop import TeleopSession
    from pipelines.dataset import EpisodeRecorder

    sim = ray.remote(EmulatedSO101).remote(seed=2, image_size=64, hand="expert")
    ports = ray.get(sim.ports.remote())
    bus = {"timeout_ms": REPLY_TIMEOUT_MS}
    follower = follower_actor().remote(ports["follower"], EMULATED_CALIBRATION, **bus)
    leader = leader_actor().remote(ports["leader"], EMULATED_CALIBRATION, **bus)
    cam = ray.remote(RobotCamera).remote(sim, "observation.images.front")
    recorder = EpisodeRecorder(
        tmp_path / "ds",
        fps=30,
        task="t",
        joint_names=JOINTS,
        cameras={"observation.images.front": (64, 64)},
    )
    # The episode ends when the test says so (stop), not on wall time: its time limit is only
    # a liveness bound, however slowly the loop and the actor's restart run on a busy machine.
    session = TeleopSession(
        follower, leader, {"observation.images.front": cam}, recorder, fps=30, episode_time_s=300
    )
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.extend(session.run(1)))
    try:
        pid = ray.get(follower.status.remote())["pid"]
        runner.start()
        assert wait_until(lambda: session.frames_this_episode >= 10)  # the loop is running
        frames_before = session.frames_this_episode
        ray.kill(follower, no_restart=False)  # the actor's process dies; Ray restarts it
        assert wait_until(lambda: session.frames_this_episode >= frames_before + 30)
        session.stop()
        runner.join(timeout=120)
        assert not runner.is_alive()
        status = ray.get(follower.status.remote())
        assert status["pid"] != pid  # a new process, which handshook again
        (outcome,) = outcomes
        assert outcome.outcome == "stop"
        t = LeRobotDataset(tmp_path / "ds").read_episode(0)
        assert t.num_rows == outcome.frames >= frames_before + 30  # recording went on
        assert t["frame_index"].to_pylist() == list(range(t.num_rows))  # nothing lost
    finally:
        for actor in (follower, leader):
            ray.get(actor.shutdown.remote())
        ray.get(sim.close.remote())
