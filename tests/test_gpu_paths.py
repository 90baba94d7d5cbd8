"""The GPU branch of every job that takes `--gpus-per-worker` / `num_gpus`, on a tiny budget.

They run when CUDA is present (the shared Ray fixture then sees the GPUs) and are skipped
otherwise, which is every CI run: no GPU is there. Each asks Ray for a GPU exactly as a user's
flag does (`gpus_per_worker=1`, `gpus_per_replica=1`, HIL-SERL's learner on the cluster's
GPU), and checks that the job finishes with its usual output.

`FLYWHEEL_GPU_TESTS_ON_CPU=1` runs the same tests without CUDA, with 0 GPUs asked, to check
their code on a CPU machine.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

ON_CPU = os.environ.get("FLYWHEEL_GPU_TESTS_ON_CPU") == "1"
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() and not ON_CPU, reason="needs CUDA (a GPU machine)"
)
GPUS = 0 if ON_CPU and not torch.cuda.is_available() else 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ray_cluster):
    """A tiny synthesized, labeled dataset (32 px) with its success-frames CSV."""
    from pipelines import label, synth

    root = tmp_path_factory.mktemp("gpu") / "ds"
    synth.run(
        synth.SynthConfig(
            out=str(root), episodes=4, seed=3, image_size=32, mix="expert=1,failing=1",
            steps_after_success=5,
        ),
        out=lambda *a: None,
    )  # fmt: skip
    label.run(label.LabelConfig(str(root), threshold=30, mlflow=False), out=lambda *a: None)
    return root


def _tiny(**kw):
    return dict(steps=4, batch_size=4, checkpoint_every=4, mlflow=False, **kw)


def test_train_estimator_and_estimate_on_a_gpu(dataset, tmp_path):
    from pipelines.estimator import inference as estimate
    from pipelines.estimator import training as train_estimator
    from pipelines.estimator.config import EstimatorTrainConfig

    trained = train_estimator.run(
        EstimatorTrainConfig.from_flags(
            dataset=str(dataset), workers=1, gpus_per_worker=GPUS, image_size=32,
            storage=str(tmp_path), name="est", **_tiny(),
        )
    )  # fmt: skip
    assert trained.step == 4
    out = estimate.run(
        estimate.EstimateConfig(str(dataset), str(trained.checkpoint), gpus_per_replica=GPUS)
    )
    assert out.frames > 0 and out.out_dir.is_dir()


def test_train_policy_on_a_gpu(dataset, tmp_path):
    from pipelines.policy import training as train
    from pipelines.policy.config import PolicyTrainConfig

    trained = train.run(
        PolicyTrainConfig.from_flags(
            dataset=str(dataset), workers=1, gpus_per_worker=GPUS, image_size=32,
            storage=str(tmp_path), name="awbc", **_tiny(),
        )
    )  # fmt: skip
    assert trained.step == 4


def test_train_classifier_and_serve_it_on_a_gpu(dataset, tmp_path):
    from ray import serve

    from pipelines.classifier.config import ClassifierTrainConfig
    from pipelines.classifier.labels import success_csv_path
    from pipelines.classifier.training import run as train_classifier
    from pipelines.demo_steps.online import free_port
    from serving import HandleRewardClient, RewardAppConfig, ServeConfig, serve_reward

    trained = train_classifier(
        ClassifierTrainConfig.from_flags(
            dataset=str(dataset), labels=str(success_csv_path(dataset)), workers=1,
            gpus_per_worker=GPUS, image_size=32, storage=str(tmp_path), name="clf", **_tiny(),
        )
    )  # fmt: skip
    serve_reward(
        ServeConfig(RewardAppConfig(str(trained.checkpoint), num_gpus=GPUS), port=free_port())
    )
    try:
        frame = np.zeros((32, 32, 3), np.uint8)
        answer = HandleRewardClient().score({"front": frame, "wrist": frame})
        assert 0.0 <= answer["probability"] <= 1.0
    finally:
        serve.shutdown()


def test_hilserl_learner_on_a_gpu(tmp_path):
    from actors import hilserl

    result = hilserl.run(
        hilserl.HilserlConfig.from_flags(
            encoder="drqv2", steps=60, batch_size=8, learning_starts=20, random_steps=20,
            checkpoint_every=60, storage=str(tmp_path), name="gpu", mlflow=False, quiet=True,
        )
    )  # fmt: skip
    assert os.path.isdir(result.checkpoint)


def test_awbc_sweep_trial_on_a_gpu(dataset, tmp_path):
    from pipelines import sweeps as sweep

    result = sweep.run(
        sweep.SweepConfig(
            kind="awbc", inputs=[str(dataset)], space={"threshold": [30.0]},
            trial=sweep.TrialSettings(steps=2, checkpoint_every=2, batch_size=4, image_size=32,
                                      eval_episodes=1, gpus_per_worker=GPUS),
            storage=str(tmp_path), name="gpu", mlflow=False,
        ),
        out=lambda *a: None,
    )  # fmt: skip
    assert [row.status for row in result.rows] == ["done"]
