"""Jobs submitted with the `ray job submit` CLI to a real `ray start --head` cluster.

The cluster is this module's own: free ports, a temporary --temp-dir, token authentication with
a token made here (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN for the head and for the CLI, so
~/.ray/auth_token is neither read nor written). It is torn down by killing its own process
group and the job drivers Ray started in sessions of their own, found by its temp dir: `ray
stop` (Ray 2.60 has no option to pick a cluster) would stop every Ray process on the machine,
the tests' session cluster and any other cluster with them.

The jobs, all through the CLI: synth, then the training job on its dataset, with label and a
job whose output would land in its temporary working directory (refused) beside them. The test
needs no other Ray cluster (not even the session one). Deselect with `-m "not ray_job_submit"`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.dataset import LeRobotDataset
from pipelines.progress_dataset import make_progress_dataset

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"

pytestmark = [
    pytest.mark.ray_job_submit,
    pytest.mark.skipif(sys.platform != "linux", reason="the teardown reads /proc"),
]

# The training job submitted beside label; train-policy replaces it here when it lands.
TRAIN_JOB = "pipelines.train_estimator {dataset} --workers 1 --cpus-per-worker 1 --steps 4 --batch-size 4 --image-size 32 --checkpoint-every 2 --storage {out}/runs --name job"  # noqa: E501

DEADLINE_S = 600  # generous: a loaded 2-core machine runs these jobs many times slower


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _processes_of(temp_dir: str, pgid: int) -> list[int]:
    """This cluster's processes: its process group, and any process working in its temp dir
    or naming it (the job drivers, which Ray starts in sessions of their own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # already dead, waiting to be reaped
            if os.getpgid(pid) == pgid:
                found.append(pid)
                continue
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(temp_dir) or temp_dir in cmdline:
            found.append(pid)
    return found


def _stop_cluster(head: subprocess.Popen, temp_dir: str) -> None:
    """SIGKILL, as `ray stop --force` does, to this cluster's processes only."""
    deadline = time.time() + 60
    while time.time() < deadline:
        pids = _processes_of(temp_dir, head.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        head.poll()  # reaps `ray start` once it is dead
        time.sleep(0.2)
    head.wait(timeout=30)


@pytest.fixture(scope="module")
def job_cluster():
    temp_dir = tempfile.mkdtemp(prefix="fw-jobs-")  # short: Ray's socket paths live under it
    gcs, dashboard, *other = _free_ports(9)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        RAY_USAGE_STATS_ENABLED="0",
        # the entrypoints' `python` is this interpreter, activated or not
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    log = open(Path(temp_dir) / "ray-start.log", "w")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--temp-dir={temp_dir}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--port={gcs}",
            f"--dashboard-port={dashboard}",
            *(
                f"--{name}={port}"
                for name, port in zip(
                    (
                        "ray-client-server-port",
                        "dashboard-agent-listen-port",
                        "dashboard-agent-grpc-port",
                        "runtime-env-agent-port",
                        "metrics-export-port",
                        "node-manager-port",
                        "object-manager-port",
                    ),
                    other,
                    strict=True,
                )
            ),
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 180
        while True:  # up once the job server answers (401 without the token is an answer)
            if head.poll() is not None:
                pytest.fail(f"ray start exited: {(Path(temp_dir) / 'ray-start.log').read_text()}")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=5).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("the head's job server did not answer within 180 s")
                time.sleep(0.5)
        yield address, env
    finally:
        _stop_cluster(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(address: str, env: dict, submission_id: str, entrypoint: str, mlflow_uri: str, log):
    """`ray job submit` as a user types it; the CLI follows the job's logs until it ends.

    Its output goes to a file: a pipe nobody reads while another job is awaited could fill up
    and stall the CLI's log tailing.
    """
    return subprocess.Popen(
        [
            str(RAY),
            "job",
            "submit",
            "--address",
            address,
            "--submission-id",
            submission_id,
            "--working-dir",
            ".",
            "--runtime-env-json",
            f'{{"env_vars": {{"MLFLOW_TRACKING_URI": "{mlflow_uri}"}}}}',
            "--",
            *f"python -m {entrypoint}".split(),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_label_and_training_jobs_through_ray_job_submit(job_cluster, tmp_path):
    """synth, then the training job on its dataset; label and a refused job beside them."""
    address, env = job_cluster
    out = tmp_path / "out"
    out.mkdir()
    mlflow_uri = f"sqlite:///{out / 'mlflow.db'}"
    progress = make_progress_dataset(tmp_path / "progress", episodes=8, seed=3, stage_nums=2)
    camera = out / "camera"
    tag = secrets.token_hex(4)
    jobs = {}

    def submit(name: str, entrypoint: str) -> None:
        with open(tmp_path / f"{name}.log", "w") as log:
            jobs[name] = _submit(address, env, f"fw-{name}-{tag}", entrypoint, mlflow_uri, log)

    def wait(names, deadline: float) -> None:
        try:
            for name in names:
                jobs[name].wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for name, proc in jobs.items():
                subprocess.run(
                    [str(RAY), "job", "stop", "--address", address, f"fw-{name}-{tag}"],
                    env=env,
                    capture_output=True,
                    timeout=120,
                )
                proc.kill()
                proc.wait()
            pytest.fail(f"the jobs did not finish within {DEADLINE_S} s")

    deadline = time.time() + DEADLINE_S
    synth = f"pipelines.synth {camera} --episodes 4 --seed 2 --image-size 32 --mix expert=1"
    submit("synth", synth)
    submit("label", f"pipelines.label {progress} --stage-nums 2 --threshold 30")
    # an output inside the job's temporary working directory is refused before any work
    submit("scratch", "pipelines.synth rel-out --episodes 1")
    wait(["synth"], deadline)
    logs = {"synth": (tmp_path / "synth.log").read_text(errors="replace")}
    assert jobs["synth"].returncode == 0, logs["synth"][-3000:]
    assert LeRobotDataset(camera).info["total_episodes"] == 4
    submit("train", TRAIN_JOB.format(dataset=camera, out=out))
    wait(list(jobs), deadline)
    logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in jobs}

    assert jobs["label"].returncode == 0, logs["label"][-3000:]
    assert f"Job 'fw-label-{tag}' succeeded" in logs["label"]
    assert "Task completed successfully" in logs["label"]
    ds = LeRobotDataset(progress)
    assert ds.info["total_tasks"] == 2
    labels = {int(v) for f in ds.data_files() for v in pq.read_table(f, columns=["task_index"])[0]}
    assert labels == {0, 1}

    assert jobs["train"].returncode == 0, logs["train"][-3000:]
    checkpoints = [
        line.split("Checkpoint: ", 1)[1].strip()
        for line in logs["train"].splitlines()
        if line.startswith("Checkpoint: ")
    ]
    assert checkpoints, logs["train"][-3000:]
    assert Path(checkpoints[-1]).is_dir()
    assert (out / "runs").resolve() in Path(checkpoints[-1]).resolve().parents

    assert jobs["scratch"].returncode != 0
    assert "temporary working directory" in logs["scratch"], logs["scratch"][-3000:]

    # both jobs logged to the absolute MLflow store given in the runtime environment: label
    # from its driver, the training job from its Ray Train worker
    with sqlite3.connect(out / "mlflow.db") as db:
        finished = db.execute(
            "SELECT e.name FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE r.status = 'FINISHED'"
        ).fetchall()
    names = sorted(name for (name,) in finished)
    assert len(names) == 2 and "flywheel-label" in names, names
