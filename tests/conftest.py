import os

import pytest

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (each Ray job costs seconds here)."""
    import ray

    from pipelines.runtime.cluster import quiet, quiet_data

    quiet()
    # On a busy machine the raylet can miss Ray's fixed 30 s start-up wait ("node timed out
    # during startup"): that is the machine, not the code under test, so start again (up to
    # three times) before failing the session.
    for attempt in range(3):
        if ray.is_initialized():
            break
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    quiet_data()
    yield ray
    ray.shutdown()


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def one_torch_thread():
    """One torch thread for tiny tensors: on a busy machine, intra-op thread pools of tiny ops
    wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def fsyncs(monkeypatch):
    """The paths fsynced while the test runs, in order (FLYWHEEL_FSYNC on, os.fsync recorded)."""
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setenv("FLYWHEEL_FSYNC", "1")
    monkeypatch.setattr(os, "fsync", fsync)
    return synced
