"""What several test modules share."""

from __future__ import annotations

import time

from pipelines import labeling


def wait_until(predicate, timeout: float = 120.0, poll: float = 0.01):
    """Poll `predicate` until it holds and return its (truthy) value, or False at the timeout
    (a liveness bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return False


def label_from_estimate(root, data_dir: str):
    """Stage 0 on an estimate's output folder (top 30 % positive, no MLflow)."""
    config = labeling.LabelConfig(
        dataset=str(root),
        data_dir=data_dir,
        advantage_source="absolute_advantage",
        threshold=30,
        mlflow=False,
    )
    return labeling.run(config, out=lambda *a: None)


def small_run(tmp_path, **options) -> dict:
    """A training job's smallest run (flag names and values): one worker, a few steps of
    small batches and images, storage under `tmp_path`, no MLflow; `options` override."""
    run = dict(
        workers=1,
        steps=2,
        batch_size=4,
        image_size=16,
        checkpoint_every=2,
        storage=str(tmp_path / "runs"),
        mlflow=False,
    )
    return {**run, **options}
