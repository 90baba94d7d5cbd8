"""MLflow tracking for Flywheel jobs.

The tracking store is MLFLOW_TRACKING_URI, by default a SQLite store `mlflow.db` in the working
directory (artifacts beside it in `mlartifacts/`). Look at runs with
`mlflow ui --backend-store-uri sqlite:///mlflow.db`.

Every job calls `check_tracking_uri` before any work, so a store MLflow cannot use is a
one-line error naming it, not a traceback from inside a Ray worker minutes later. A `file:`
store (or a plain folder path) is accepted with a one-line warning: MLflow 3.17 refuses file
stores unless MLFLOW_ALLOW_FILE_STORE=true, which `allow_store` sets for the run, in the driver
and, through the job's config, in the Ray workers that log.

`TrackedRun` talks to MLflow from a helper process started when the job starts: importing
MLflow, opening (or migrating) the store and rendering figures take a few CPU-seconds, which
then overlap the job instead of holding the driver's interpreter while it schedules Ray work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.runtime.cluster import in_job_scratch


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class TrackingError(RuntimeError):
    pass


_SUGGEST = f"use e.g. MLFLOW_TRACKING_URI=sqlite:///{Path.cwd() / 'mlflow.db'}"
# Database stores MLflow opens through SQLAlchemy, and hosted ones: accepted as given.
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")


def _file_store_path(uri: str) -> Path | None:
    """The folder of a file store (`file:` URI or a plain path), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)  # a plain path (or a Windows drive letter)
    return None


def allow_store(uri: str) -> None:
    """Let MLflow open a file store in this process (MLflow 3.17 refuses them by default)."""
    if _file_store_path(uri) is not None:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"


def check_tracking_uri(uri: str | None = None, warn=None) -> str:
    """Check the tracking store before a job does any work; returns the URI.

    A TrackingError (one line, naming the URI and suggesting a SQLite store) for a store MLflow
    could not use; a warning for a file store, which is then allowed for this run.
    """
    uri = uri or tracking_uri()

    def bad(why: str) -> TrackingError:
        return TrackingError(f"MLflow tracking URI {uri!r}: {why}; {_SUGGEST}")

    def check_kept(path: Path) -> None:  # not in a submitted job's temporary working dir
        if in_job_scratch(path) is not None:
            raise TrackingError(
                f"MLflow tracking URI {uri!r}: {path} is inside this `ray job submit` job's "
                "temporary working directory, which Ray deletes after the job; submit with "
                """--runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": """
                """"sqlite:////<absolute path>/mlflow.db"}}' (or a tracking server's URI)"""
            )

    folder = _file_store_path(uri)
    if folder is not None:
        check_kept(folder)
        parent = folder if folder.exists() else folder.parent
        if folder.exists() and not folder.is_dir():
            raise bad("a file store must be a folder, and this is a file")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise bad(f"folder {parent} does not exist or is not writable")
        allow_store(uri)
        (warn or _warn)(
            f"warning: MLflow tracking URI {uri!r} is a file store, which MLflow 3.17 refuses "
            "unless MLFLOW_ALLOW_FILE_STORE=true: allowed for this run (a SQLite store, "
            "sqlite:///<path>/mlflow.db, needs no such setting)"
        )
        return uri
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri == "sqlite:///":
            raise bad("a SQLite store needs a file path, sqlite:///<path>/mlflow.db")
        if uri in ("sqlite:///:memory:",):
            raise bad("an in-memory store keeps nothing")
        db = Path(unquote(uri[len("sqlite:///") :]))
        if not db.is_absolute():
            db = Path.cwd() / db
        check_kept(db)
        if db.exists():
            if not db.is_file():
                raise bad(f"{db} is not a file")
            with open(db, "rb") as f:
                head = f.read(16)
            if head and head != b"SQLite format 3\x00":
                raise bad(f"{db} is not a SQLite database")
            if not os.access(db, os.W_OK):
                raise bad(f"{db} is not writable")
        elif not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise bad(f"folder {db.parent} does not exist or is not writable")
        return uri
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise bad("no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname, port), timeout=5):
                pass
        except OSError as e:
            raise bad(f"no tracking server answers at {parsed.hostname}:{port} ({e})") from None
        return uri
    if parsed.scheme.split("+")[0] in _DATABASE_SCHEMES:
        return uri
    raise bad(f"unknown scheme {parsed.scheme!r}")


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


class TrackedRun:
    """One MLflow run, logged by a helper process.

    Nothing is created in the store until `start` is called, so a job that fails its input
    checks leaves no run behind (`abort`). `finish` waits for everything to be logged and
    raises TrackingError with MLflow's message if anything failed.
    """

    def __init__(self, experiment: str):
        self.experiment = experiment
        self.uri = tracking_uri()
        allow_store(self.uri)
        self.run_id: str | None = None
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child, self.uri, experiment), name="flywheel-mlflow", daemon=True
        )
        self._proc.start()
        child.close()

    def start(self, run_name: str, params: dict) -> None:
        self._conn.send(("start", run_name, {k: str(v)[:500] for k, v in params.items()}))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self._conn.send(("metrics", {k: float(v) for k, v in metrics.items()}, step))

    def log_text(self, text: str, name: str) -> None:
        self._conn.send(("text", text, name))

    def log_figure(self, build: Callable, name: str, **data) -> None:
        """Log the PNG of `build(**data)`, a module-level function returning a figure."""
        self._conn.send(("figure", build, name, data))

    def finish(self, status: str = "FINISHED") -> str:
        """Close the run; returns a one-line description of where it is."""
        self._conn.send(("finish", status))
        try:
            reply = self._conn.recv()
        except EOFError:
            reply = ("error", "the MLflow helper process died")
        self._proc.join(timeout=30)
        if reply[0] == "error":
            raise TrackingError(f"MLflow ({self.uri}): {reply[1]}")
        self.run_id = reply[1]
        return f"MLflow run {self.run_id} (experiment '{self.experiment}', store {self.uri})"

    def abort(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(("abort",))
        self._proc.join(timeout=30)


def _serve(conn, uri: str, experiment: str) -> None:
    """The helper process: import MLflow, then carry out the job's requests in order."""
    error = None
    try:
        import logging

        import matplotlib

        matplotlib.use("Agg")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    run_id = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        if kind == "abort":
            return
        if kind == "finish":
            if error is None and run_id is not None:
                try:
                    client.set_terminated(run_id, status=msg[1])
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
            conn.send(("error", error) if error else ("ok", run_id))
            return
        if error is not None:
            continue
        try:
            if kind == "start":
                run_id = client.create_run(exp_id, run_name=msg[1]).info.run_id
                params = [Param(k, v) for k, v in msg[2].items()]
                client.log_batch(run_id, params=params)
            elif kind == "metrics":
                import time

                now = int(time.time() * 1000)
                items = [Metric(k, v, now, msg[2]) for k, v in msg[1].items()]
                for i in range(0, len(items), 900):
                    client.log_batch(run_id, metrics=items[i : i + 900])
            elif kind == "text":
                client.log_text(run_id, msg[1], msg[2])
            elif kind == "figure":
                fig = msg[1](**msg[3])
                with tempfile.TemporaryDirectory() as d:
                    path = Path(d) / msg[2]
                    fig.savefig(path, dpi=100, bbox_inches="tight")
                    client.log_artifact(run_id, str(path))
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
