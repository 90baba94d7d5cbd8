"""An output a job cannot write (under a regular file, or in /proc) is one line naming the flag,
exit 2, before any work starts (Ray, training, the evaluation), and nothing is written."""

from pathlib import Path

import pytest

from actors.collection import driver as collect_driver
from pipelines import collect, eval_policy, synth, train_estimator
from pipelines.estimator import training as estimator_training
from pipelines.evaluation import driver as eval_driver
from pipelines.labeling.progress_dataset import make_progress_dataset
from pipelines.synthesis import driver as synth_driver


def dataset(tmp_path):
    return str(make_progress_dataset(tmp_path / "data" / "ds", episodes=4, seed=1))


# job -> (main, argv for an output `out`, what must not start, the error line's start)
JOBS = {
    "synth OUT": (
        synth.main,
        lambda out, tmp: [str(out), "--episodes", "1"],
        [(synth_driver, "connect")],
        "flywheel synth: error: ",
    ),
    "collect OUT": (
        collect.main,
        lambda out, tmp: [str(out), "--episodes", "1"],
        [(collect_driver, "connect")],
        "flywheel collect: error: ",
    ),
    "eval-policy --report": (
        eval_policy.main,
        lambda out, tmp: ["controller:expert", "--one-process", "--no-mlflow", "--report", out],
        [(eval_driver, "run_group"), (eval_driver, "connect")],
        "flywheel eval-policy: error: --report ",
    ),
    "train-estimator --storage": (
        train_estimator.main,
        lambda out, tmp: [dataset(tmp), "--storage", str(out), "--no-mlflow", "--steps", "1"],
        [(estimator_training, "run_training")],
        "flywheel train-estimator: error: --storage ",
    ),
}


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
@pytest.mark.parametrize("job", sorted(JOBS))
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, job, where
):
    main, argv, never_started, start = JOBS[job]

    def started(*_a, **_k):
        raise AssertionError(f"{job}: the work started")

    for module, name in never_started:
        monkeypatch.setattr(module, name, started)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = blocker / "out" if where == "under a file" else Path("/proc/flywheel-out")
    assert main([str(a) for a in argv(out, tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(start) and str(out) in line, line
    assert ("is a file, not a folder" if where == "under a file" else "/proc") in line
    assert blocker.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["a-file"]
