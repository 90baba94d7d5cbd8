"""`flywheel train-estimator --storage` that cannot be written: one line, before Ray starts."""

import pytest

from pipelines import train_estimator
from pipelines.estimator import training
from pipelines.labeling.progress_dataset import make_progress_dataset


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_a_storage_that_cannot_be_written_is_one_line_before_ray(
    tmp_path, capsys, monkeypatch, where
):
    def no_training(*_a, **_k):
        raise AssertionError("the training (and Ray) started")

    monkeypatch.setattr(training, "run_training", no_training)
    dataset = make_progress_dataset(tmp_path / "ds", episodes=4, seed=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    storage = blocker / "runs" if where == "under a file" else "/proc/flywheel-runs"
    argv = [str(dataset), "--storage", str(storage), "--no-mlflow", "--steps", "1"]
    assert train_estimator.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("flywheel train-estimator: error: --storage "), line
    assert ("is a file, not a folder" if where == "under a file" else "inside /proc") in line
    assert blocker.read_text() == "mine"
