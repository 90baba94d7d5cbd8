"""`flywheel eval-policy --report` that cannot be written: one line before the evaluation (it
was refused after it, losing the evaluation)."""

from pathlib import Path

import pytest

from pipelines import eval_policy
from pipelines.evaluation import driver


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_a_report_that_cannot_be_written_is_one_line_before_the_evaluation(
    tmp_path, capsys, monkeypatch, where
):
    def never(*_a, **_k):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(driver, "run_group", never)
    monkeypatch.setattr(driver, "connect", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    report = blocker / "report.json" if where == "under a file" else Path("/proc/report.json")
    argv = ["controller:expert", "--episodes", "1", "--one-process", "--no-mlflow"]
    assert eval_policy.main([*argv, "--report", str(report)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("flywheel eval-policy: error: --report "), line
    assert ("is a file, not a folder" if where == "under a file" else "inside /proc") in line
    assert blocker.read_text() == "mine"
