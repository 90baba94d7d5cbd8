"""A policy records the units it was trained in; eval-policy converts at the simulator's edge
with the arm's calibration, or refuses in one line (no Ray)."""

from pathlib import Path

import numpy as np
import torch

from pipelines import eval_policy, train_policy
from pipelines.dataset.calibration import read_calibration_file
from pipelines.dataset.units import RANGE_0_100, RANGE_M100_100, JointConverter
from pipelines.policy import training as train
from pipelines.policy.config import PolicyTrainConfig
from pipelines.policy.model import ChunkPolicy, PolicyConfig
from pipelines.policy.runner import ChunkPolicyRunner
from pipelines.runtime.checkpoints import write_checkpoint

DATA = Path(__file__).resolve().parents[2] / "data"
M100 = DATA / "lerobot061_v30_m100"  # LeRobot 0.6.1 wrote it, body joints in -100..100
CALIBRATION = DATA / "lerobot061_v30_m100_calibration/robots/so_follower/flywheel_m100.json"
M100_UNITS = [RANGE_M100_100] * 5 + [RANGE_0_100]


def _one_line_error(main, argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_a_policy_trained_in_m100_is_converted_or_refused(tmp_path, capsys):
    storage = tmp_path / "runs"
    base = [str(M100), "--conditioning", "none", "--no-mlflow", "--storage", str(storage)]
    err = _one_line_error(train_policy.main, base, capsys)
    assert "no units for observation.state" in err and "--units range_m100_100" in err
    assert not storage.exists()
    config = PolicyTrainConfig.from_flags(
        dataset=str(M100), image_size=16, conditioning="none", units=RANGE_M100_100
    )
    meta = train.prepare(config).meta
    assert meta["units"]["observation.state"] == meta["units"]["action"] == M100_UNITS
    assert meta["unit"] == RANGE_M100_100  # what `flywheel export` writes as config.json's unit
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    model = ChunkPolicy(PolicyConfig(**meta["model"]))
    write_checkpoint(
        folder, "policy", {"model": model.state_dict(), "step": 0}, {**meta, "step": 0}
    )
    run = [str(folder), "--episodes", "1", "--one-process", "--no-mlflow"]
    err = _one_line_error(eval_policy.main, run, capsys)
    assert "joints in range_m100_100 need the arm's calibration to convert to degrees" in err
    assert "give --calibration FILE|ID" in err
    assert eval_policy.main([*run, "--calibration", str(CALIBRATION)]) == 0


class Recorder(torch.nn.Module):
    """A model stand-in: keeps the state it is given, predicts a constant chunk."""

    def __init__(self, chunk: np.ndarray):
        super().__init__()
        self.config = PolicyConfig(
            cameras=["observation.images.front"], state_dim=6, action_dim=6, chunk_size=2
        )
        self.chunk, self.seen = torch.from_numpy(chunk), []

    def predict(self, images, state, tokens):
        self.seen.append(state[0].numpy().copy())
        return self.chunk[None].repeat(len(state), 1, 1)


def test_the_runner_sees_its_units_and_acts_in_degrees():
    calibration = read_calibration_file(CALIBRATION)
    joints = list(calibration)
    to_m100 = JointConverter(joints, M100_UNITS, calibration, "w")
    chunk = np.array([[50.0, -50, 0, 25, -100, 40]] * 2, np.float32)  # in range_m100_100
    model = Recorder(chunk)
    runner = ChunkPolicyRunner(
        model, "t", "t", n_action_steps=1, state_units=to_m100, action_units=to_m100
    )
    degrees = np.array([10.0, -20, 30, 0, 5, 60], np.float32)
    observation = {"observation.state": degrees, "observation.images.front": np.zeros((8, 8, 3))}
    action = runner.act(observation)
    np.testing.assert_allclose(model.seen[0], to_m100.from_internal(degrees), atol=1e-4)
    np.testing.assert_allclose(action, to_m100.to_internal(chunk[0]), atol=1e-4)
    assert abs(action[0] - 50) > 5 and action[5] == 40  # body joints converted, gripper as is
    plain = Recorder(chunk)  # a policy in degrees: nothing converted
    assert ChunkPolicyRunner(plain, "t", "t", n_action_steps=1).act(observation)[0] == 50
    np.testing.assert_array_equal(plain.seen[0], degrees)
