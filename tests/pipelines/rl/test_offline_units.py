"""HIL-SERL's offline seeding meets a LeRobot recording in -100..100 in the env's degrees."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.feetech.calibration import Normalizer
from pipelines.dataset import DatasetError
from pipelines.dataset.calibration import read_calibration_file
from pipelines.dataset.units import SO101_JOINTS
from pipelines.rl.offline import check_offline_dataset, load_offline_episodes

DATA = Path(__file__).resolve().parents[2] / "data"
CALIBRATION = DATA / "lerobot061_v30_m100_calibration/robots/so_follower/flywheel_m100.json"
CAMERAS = ["observation.images.front"]


@pytest.fixture
def recording(tmp_path) -> Path:
    """The LeRobot-written recording with the `next.reward` column seeding needs (zeros)."""
    root = Path(shutil.copytree(DATA / "lerobot061_v30_m100", tmp_path / "m100"))
    for path in (root / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        zeros = pa.array(np.zeros(table.num_rows, np.float32))
        pq.write_table(table.append_column("next.reward", zeros), path)
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    info_path.write_text(json.dumps(info))
    return root


def test_the_recording_is_seeded_in_degrees_with_its_arms_calibration(recording):
    with pytest.raises(DatasetError, match="may be LeRobot's range_m100_100 .* --offline-units"):
        check_offline_dataset(str(recording), CAMERAS)
    with pytest.raises(DatasetError) as e:
        check_offline_dataset(str(recording), CAMERAS, "range_m100_100")
    assert "give --offline-calibration FILE|ID" in str(e.value) and "\n" not in str(e.value)
    ds = check_offline_dataset(str(recording), CAMERAS, "range_m100_100", str(CALIBRATION))
    episodes = list(
        load_offline_episodes(
            ds, CAMERAS, 16, 0.02, units="range_m100_100", calibration=str(CALIBRATION)
        )
    )
    assert len(episodes) == 3
    arm, raw = (
        Normalizer(read_calibration_file(CALIBRATION)),
        np.load(DATA / "lerobot061_v30_m100_raw.npz"),
    )
    for episode in episodes:
        e = episode.info["dataset_episode"]
        truth = [
            [arm.normalize({n: int(r[i])})[n] for i, n in enumerate(SO101_JOINTS)]
            for r in raw[f"state/{e}"]
        ]
        assert np.abs(episode.obs["observation.state"] - np.array(truth)).max() < 0.01
    # read as degrees (what the flag says) the same values are other states: units matter
    as_degrees = next(load_offline_episodes(ds, CAMERAS, 16, 0.02, units="degrees"))
    assert (
        np.abs(as_degrees.obs["observation.state"] - episodes[0].obs["observation.state"]).max() > 5
    )
