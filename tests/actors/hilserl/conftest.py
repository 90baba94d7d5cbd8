"""What the HIL-SERL tests share: a frozen encoder checkpoint."""

import pytest
import torch

from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig
from pipelines.runtime.checkpoints import write_checkpoint

CAMS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    """A (randomly initialised) estimator checkpoint at 32 x 32: a valid frozen encoder."""
    path = tmp_path_factory.mktemp("enc") / "estimator"
    path.mkdir()
    cfg = EstimatorConfig(variant="pi06", cameras=CAMS, image_size=32)
    torch.manual_seed(0)
    state = {"model": AdvantageEstimator(cfg).state_dict()}
    write_checkpoint(path, "estimator", state, {"step": 1, "model": cfg.to_dict()})
    return path
