"""The MLflow store is checked before any work: one-line errors; file stores warn, then work."""

import os
import socket

import pytest

from pipelines import label, train_estimator
from pipelines.labeling.progress_dataset import make_progress_dataset
from pipelines.runtime.tracking import TrackingError, check_tracking_uri


def test_sqlite_store_in_a_writable_folder_is_accepted(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert check_tracking_uri(uri) == uri


@pytest.mark.parametrize(
    "make_uri, why",
    [
        (lambda d: f"sqlite:///{d / 'no' / 'such' / 'mlflow.db'}", "does not exist"),
        (lambda d: "sqlite://", "needs a file path"),
        (lambda d: "sqlite:///:memory:", "in-memory"),
        (lambda d: f"file://{d / 'missing' / 'deeper' / 'mlruns'}", "does not exist"),
        (lambda d: "ftp://example.org/mlruns", "unknown scheme 'ftp'"),
        (lambda d: "http://", "no host"),
    ],
)
def test_unusable_stores_are_one_line_errors_that_suggest_sqlite(tmp_path, make_uri, why):
    uri = make_uri(tmp_path)
    with pytest.raises(TrackingError) as err:
        check_tracking_uri(uri)
    msg = str(err.value)
    assert why in msg and repr(uri) in msg and "sqlite:///" in msg and "\n" not in msg


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("not a database")
    with pytest.raises(TrackingError, match="not a SQLite database"):
        check_tracking_uri(f"sqlite:///{db}")


def test_an_http_store_nobody_serves_is_refused():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match=f"no tracking server answers at 127.0.0.1:{port}"):
        check_tracking_uri(f"http://127.0.0.1:{port}")


def test_a_file_store_is_allowed_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    warnings = []
    uri = f"file://{tmp_path / 'mlruns'}"
    assert check_tracking_uri(uri, warn=warnings.append) == uri
    assert len(warnings) == 1 and "MLFLOW_ALLOW_FILE_STORE" in warnings[0]
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    check_tracking_uri(str(tmp_path / "plain-folder"), warn=warnings.append)  # a plain path too
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"


def test_jobs_refuse_a_bad_store_before_any_work(tmp_path, monkeypatch, capsys):
    ds = make_progress_dataset(tmp_path / "ds", episodes=2)
    before = {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}")
    for main in (label.main, train_estimator.main):
        assert main([str(ds)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "MLflow tracking URI" in err, err
    assert {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()} == before


@pytest.mark.usefixtures("ray_cluster")
def test_label_logs_to_a_file_store(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{store}")
    ds = make_progress_dataset(tmp_path / "ds", episodes=3)
    assert label.main([str(ds), "--threshold", "30"]) == 0
    captured = capsys.readouterr()
    assert "file store" in captured.err and "MLflow run" in captured.out
    assert any(store.rglob("meta.yaml"))
