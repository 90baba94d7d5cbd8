"""A `ray job submit` job's temporary working directory: outputs there are refused up front.

These run the checks in this process with the environment Ray's job supervisor gives a job's
driver (RAY_JOB_CONFIG_JSON_ENV_VAR, the current directory = the unpacked working_dir); the
real submissions are in tests/clusters/test_job_submit.py.
"""

import json

import pytest

from pipelines import label, synth, train_estimator
from pipelines.labeling.progress_dataset import make_progress_dataset
from pipelines.runtime.cluster import ClusterError, check_job_output, job_scratch_dir
from pipelines.runtime.tracking import TrackingError, check_tracking_uri


def _as_job(monkeypatch, scratch, working_dir="gcs://_ray_pkg_0123456789abcdef.zip"):
    runtime_env = {"working_dir": working_dir} if working_dir else {}
    config = {"runtime_env": runtime_env, "metadata": {"job_submission_id": "raysubmit_x"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))
    scratch.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(scratch)


def test_outside_a_job_nothing_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert job_scratch_dir() is None
    check_job_output("relative/out", "--storage")


def test_outputs_in_the_jobs_working_dir_are_refused(tmp_path, monkeypatch):
    scratch = tmp_path / "working_dir_files" / "_ray_pkg_0123"
    _as_job(monkeypatch, scratch)
    assert job_scratch_dir() == scratch.resolve()
    for path in ("runs", "./ds", str(scratch / "out"), str(scratch)):
        with pytest.raises(ClusterError, match="temporary working directory") as err:
            check_job_output(path, "--storage")
        assert str(err.value).startswith(f"--storage {path}: ") and "\n" not in str(err.value)
    check_job_output(tmp_path / "elsewhere", "--storage")  # absolute, outside: fine
    check_job_output("s3://bucket/runs", "--storage")


@pytest.mark.parametrize("working_dir", [None, "local:///mnt/flywheel/src"])
def test_no_working_dir_or_a_nodes_own_directory_is_not_temporary(
    tmp_path, monkeypatch, working_dir
):
    _as_job(monkeypatch, tmp_path / "cwd", working_dir)
    assert job_scratch_dir() is None
    check_job_output("runs", "--storage")


def test_the_mlflow_store_must_outlive_the_job(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    _as_job(monkeypatch, scratch)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for uri in (None, "sqlite:///mlflow.db", f"file://{scratch / 'mlruns'}"):
        with pytest.raises(TrackingError, match="temporary working directory") as err:
            check_tracking_uri(uri)
        assert "MLFLOW_TRACKING_URI" in str(err.value) and "\n" not in str(err.value)
    kept = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert check_tracking_uri(kept) == kept


def test_each_job_refuses_before_writing(tmp_path, monkeypatch, capsys):
    scratch = tmp_path / "scratch"
    ds = make_progress_dataset(scratch / "ds", episodes=2, seed=1)
    before = {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()}
    _as_job(monkeypatch, scratch)
    assert label.main(["ds", "--no-mlflow"]) == 2
    assert "dataset (labeled in place) ds: inside this `ray job submit`" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()} == before
    assert synth.main(["new", "--episodes", "1"]) == 2
    assert "output dataset new: inside" in capsys.readouterr().err
    assert not (scratch / "new").exists()
    argv = [str(ds), "--no-mlflow"]  # the default --storage is relative
    assert train_estimator.main(argv) == 2
    assert "--storage flywheel-runs: inside" in capsys.readouterr().err
    assert not (scratch / "flywheel-runs").exists()
