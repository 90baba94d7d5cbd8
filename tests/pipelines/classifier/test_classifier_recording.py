"""Recorders write the reward classifier's success-frames CSV: teleop on the emulated arms."""

import numpy as np
import pytest

from pipelines import robot
from pipelines.classifier import labels
from pipelines.dataset import LeRobotDataset


@pytest.mark.usefixtures("ray_cluster")
def test_teleop_records_after_the_success_key_and_writes_the_csv(tmp_path, capsys):
    out = tmp_path / "teleop"
    argv = ["teleop", out, "--episodes", 1, "--episode-time", 40, "--steps-after-success", 5]
    assert robot.main([str(a) for a in argv]) == 0
    csv = labels.success_csv_path(out)
    assert f"Success frames: {csv}" in capsys.readouterr().out
    rows = labels.read_success_csv(csv)
    reward = LeRobotDataset(out).read_episode(0, ["next.reward"])["next.reward"].to_numpy()
    start = rows[0].success_start  # the simulated operator's success key
    assert start is not None and len(reward) == start + 1 + 5  # 5 frames recorded after it
    assert (reward[start:] == 1).all() and not reward[:start].any()
    y, keep = rows[0].arrays(len(reward))
    assert keep.all() and np.array_equal(y, reward.astype(np.uint8))

    # rows already there are kept (corrected by hand); new episodes get theirs from next.reward
    csv.write_text("episode,success_start,env_reset_start\n0,3,\n")
    assert labels.sync_success_csv(out) == csv
    assert labels.read_success_csv(csv)[0].success_start == 3
    assert labels.sync_success_csv(tmp_path / "nothing") is None
    assert robot.main(["teleop", str(out), "--steps-after-success", "-1"]) == 2
    assert "--steps-after-success -1" in capsys.readouterr().err
