"""Small datasets for the hardening tests: made by the recorder, no cameras (fast)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.dataset import EpisodeRecorder

REPO = Path(__file__).resolve().parents[3]


def record(root, version="v2.1", episodes=2, frames=3, close=True, camera=False):
    """Episodes recorded into `root`; `camera`: a 16x16 camera `front` in mpeg4."""
    cameras = {"front": (16, 16)} if camera else {}
    rec = EpisodeRecorder(
        root,
        fps=10,
        task="t",
        joint_names=["a", "b"],
        cameras=cameras,
        version=version,
        vcodec="mpeg4" if camera else None,
    )
    for _ in range(episodes):
        rec.begin()
        for i in range(frames):
            images = {k: np.full((16, 16, 3), 40 * i, np.uint8) for k in cameras}
            rec.add(np.full(2, i, np.float32), np.zeros(2, np.float32), images)
        rec.save(success=True)
    if close:
        rec.close()
    return rec


@pytest.fixture(params=["v2.1", "v3.0"])
def tiny(request, tmp_path):
    root = tmp_path / "ds"
    record(root, request.param)
    return root


@pytest.fixture()
def tiny21(tmp_path):
    root = tmp_path / "ds21"
    record(root)
    return root


def child_env():
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "FLYWHEEL_FSYNC": "0"}


PYTHON = sys.executable
