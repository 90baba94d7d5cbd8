"""`flywheel label` with MLflow and on an existing Ray cluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.dataset import (
    LeRobotDataset,
)
from tests.pipelines.labeling.helpers import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_mlflow_run_is_logged(small, mlflow_uri, capsys):
    code, out, err = run_cli([small, "--stage-nums", "2"], capsys)
    assert code == 0, err
    assert "MLflow run" in out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-label")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["threshold"] == "70.0" and run.data.params["stage_nums"] == "2"
    m = run.data.metrics
    assert {"stage_0/threshold", "stage_1/threshold", "stage_0/frames"} <= set(m)
    assert m["label_count/task_index_0"] + m["label_count/task_index_1"] == m["frames"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"reward_histogram.png", "task_index_counts.tsv"} <= names


def test_existing_cluster_by_address(small):
    """`--ray-address` joins a cluster started with `ray start --head` (token auth)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).parent / "ray"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--block",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        cmd = [
            sys.executable,
            "-m",
            "pipelines.label",
            str(small),
            "--no-mlflow",
            "--ray-address",
            f"127.0.0.1:{port}",
        ]
        deadline = time.time() + 60
        while time.time() < deadline:  # the head's GCS needs a few seconds to listen
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**env, "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Task completed successfully" in proc.stdout
        assert LeRobotDataset(small).info["total_tasks"] == 2

    finally:  # the whole head (ray start --block and the processes it started) at once
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)


def test_missing_token_is_explained():
    from ray.exceptions import AuthenticationError

    from pipelines.runtime.cluster import _why

    try:
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: token is missing")
        except AuthenticationError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as e:
        assert "run with RAY_AUTH_MODE=token" in _why(e)
    assert _why(ConnectionError("Failed to connect\n to GCS")) == "Failed to connect to GCS"
