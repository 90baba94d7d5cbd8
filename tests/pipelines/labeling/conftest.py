import pytest

from pipelines.labeling.progress_dataset import make_progress_dataset


@pytest.fixture()
def small(tmp_path):
    return make_progress_dataset(tmp_path / "ds", episodes=12, seed=3, stage_nums=2)
