"""Jobs submitted with the `ray job submit` CLI to a real `ray start --head` cluster.

The cluster is this module's own: free ports, a temporary --temp-dir, token authentication with
a token made here (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN for the head and for the CLI, so
~/.ray/auth_token is neither read nor written). It is torn down by killing its own process
group and the job drivers Ray started in sessions of their own, found by its temp dir: `ray
stop` (Ray 2.60 has no option to pick a cluster) would stop every Ray process on the machine,
the tests' session cluster and any other cluster with them.

The jobs, all through the CLI: synth, then train-policy on its dataset, with label and a
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
from pipelines.labeling.progress_dataset import make_progress_dataset

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"

pytestmark = [
    pytest.mark.ray_job_submit,
    pytest.mark.skipif(sys.platform != "linux", reason="the teardown reads /proc"),
]

# The training job submitted beside label: Stage 3, plain BC on the synthesized dataset.
TRAIN_JOB = "pipelines.train_policy {dataset} --conditioning none --workers 1 --cpus-per-worker 1 --steps 4 --batch-size 4 --image-size 16 --checkpoint-every 2 --storage {out}/runs --name job"  # noqa: E501

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


class JobCLI:
    """`ray job submit / status / logs / stop` against the module's cluster, as a user types them.

    Submissions use `--no-wait` and the test polls `ray job status`: a dashboard that stops
    answering for a moment on a loaded machine (seen: "Connection refused" mid-run) costs a
    retry, not the test. A submission is retried while the job server does not answer; one
    that got through before its reply was lost shows up as "already exists".
    """

    TRANSIENT = ("Connection refused", "ConnectionError", "Failed to connect", "timed out")
    DONE = ("SUCCEEDED", "FAILED", "STOPPED")

    def __init__(self, address: str, env: dict, tag: str):
        self.address, self.env, self.tag = address, env, tag

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(RAY), "job", args[0], "--address", self.address, *args[1:]]
        return subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def _id(self, name: str) -> str:
        return f"fw-{name}-{self.tag}"

    def submit(self, name: str, entrypoint: str, mlflow_uri: str, deadline: float) -> None:
        env_json = f'{{"env_vars": {{"MLFLOW_TRACKING_URI": "{mlflow_uri}"}}}}'
        while True:
            r = self._run(
                "submit",
                "--no-wait",
                "--submission-id",
                self._id(name),
                "--working-dir",
                ".",
                "--runtime-env-json",
                env_json,
                "--",
                *f"python -m {entrypoint}".split(),
            )
            said = r.stdout + r.stderr
            if r.returncode == 0 or "already exists" in said:
                return
            if not any(t in said for t in self.TRANSIENT) or time.time() > deadline:
                pytest.fail(f"ray job submit {name}: {said[-2000:]}")
            time.sleep(2)

    def status(self, name: str) -> str | None:
        """The job's status, or None while the job server does not answer."""
        try:
            r = self._run("status", self._id(name))
        except subprocess.TimeoutExpired:
            return None
        said = r.stdout + r.stderr  # "Job 'x' succeeded", "... failed", "... was stopped",
        job = f"Job '{self._id(name)}'"  # or "Status for job 'x': RUNNING"
        for state, words in (
            ("SUCCEEDED", f"{job} succeeded"),
            ("FAILED", f"{job} failed"),
            ("STOPPED", f"{job} was stopped"),
        ):
            if words in said:
                return state
        found = [s for s in ("RUNNING", "PENDING") if f"': {s}" in said]
        return found[0] if found else None

    def wait(self, names: list[str], deadline: float) -> dict[str, str]:
        ended: dict[str, str] = {}
        while len(ended) < len(names):
            for name in names:
                if name not in ended and (state := self.status(name)) in self.DONE:
                    ended[name] = state
            if time.time() > deadline:
                for name in names:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._run("stop", self._id(name))
                pytest.fail(f"jobs {sorted(set(names) - set(ended))} did not end in time")
            if len(ended) < len(names):
                time.sleep(1)
        return ended

    def logs(self, name: str) -> str:
        for _ in range(30):  # the logs of an ended job, once the job server answers
            with contextlib.suppress(subprocess.TimeoutExpired):
                r = self._run("logs", self._id(name))
                if r.returncode == 0:
                    return r.stdout
            time.sleep(2)
        pytest.fail(f"no logs for job {name}")


def test_label_and_train_policy_jobs_through_ray_job_submit(job_cluster, tmp_path):
    """synth, then train-policy (plain BC) on its dataset; label and a refused job beside them."""
    address, env = job_cluster
    out = tmp_path / "out"
    out.mkdir()
    mlflow_uri = f"sqlite:///{out / 'mlflow.db'}"
    progress = make_progress_dataset(tmp_path / "progress", episodes=8, seed=3, stage_nums=2)
    camera = out / "camera"
    cli = JobCLI(address, env, secrets.token_hex(4))
    deadline = time.time() + DEADLINE_S
    synth = f"pipelines.synth {camera} --episodes 4 --seed 2 --image-size 32 --mix expert=1"
    cli.submit("synth", synth, mlflow_uri, deadline)
    cli.submit(
        "label", f"pipelines.label {progress} --stage-nums 2 --threshold 30", mlflow_uri, deadline
    )
    # an output inside the job's temporary working directory is refused before any work
    cli.submit("scratch", "pipelines.synth rel-out --episodes 1", mlflow_uri, deadline)
    states = cli.wait(["synth"], deadline)
    assert states["synth"] == "SUCCEEDED", cli.logs("synth")[-3000:]
    assert LeRobotDataset(camera).info["total_episodes"] == 4
    cli.submit("train", TRAIN_JOB.format(dataset=camera, out=out), mlflow_uri, deadline)
    states.update(cli.wait(["label", "scratch", "train"], deadline))
    logs = {name: cli.logs(name) for name in states}

    assert states["label"] == "SUCCEEDED", logs["label"][-3000:]
    assert "Task completed successfully" in logs["label"]
    ds = LeRobotDataset(progress)
    assert ds.info["total_tasks"] == 2
    labels = {int(v) for f in ds.data_files() for v in pq.read_table(f, columns=["task_index"])[0]}
    assert labels == {0, 1}

    assert states["train"] == "SUCCEEDED", logs["train"][-3000:]
    checkpoints = [
        line.split("Checkpoint: ", 1)[1].strip()
        for line in logs["train"].splitlines()
        if line.startswith("Checkpoint: ")
    ]
    assert checkpoints, logs["train"][-3000:]
    assert Path(checkpoints[-1]).is_dir()
    assert (out / "runs").resolve() in Path(checkpoints[-1]).resolve().parents

    assert states["scratch"] == "FAILED"
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
