"""The reward classifier: model, batches, thresholds, and training on Ray Train."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import synth, train_classifier
from pipelines.classifier import data, labels, metrics
from pipelines.classifier.config import ClassifierTrainConfig
from pipelines.classifier.model import (
    ClassifierConfig,
    FeatureExtractor,
    RewardClassifier,
    camera_batch,
    load_feature_extractor,
    load_reward_model,
)
from pipelines.classifier.training import run, split_held_out
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.vision.encoders import ENCODERS, ResNetSmall
from pipelines.vision.images import random_shift
from tests.helpers import small_run

CAMS = ["observation.images.front", "observation.images.wrist"]

# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("encoder", ["small_convnet", "resnet10", "resnet_small"])
def test_every_parameter_trains_and_the_head_sees_the_features(encoder):
    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=64, encoder=encoder))
    x = torch.randint(0, 255, (4, 2, 64, 64, 3), dtype=torch.uint8)
    logits = model(x)
    assert logits.shape == (4,)
    logits.sum().backward()
    # DDP needs a gradient for every parameter: the encoder's unused pooling head is not there
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        feats = model.encode(x)
        assert feats.shape == (4, 2 * 256)
        assert torch.equal(model.head(feats).squeeze(1), model(x))


def test_the_estimators_encoder_keeps_its_checkpoint_keys():
    keys = list(ResNetSmall(128).state_dict())
    assert keys[0] == "net.0.weight" and keys[-1] == "net.8.bias"
    assert {"small_convnet", "resnet10", "resnet_small"} <= set(ENCODERS)


def test_feature_extractor_is_frozen_deterministic_and_checks_its_input():
    torch.manual_seed(1)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=32))
    fx = FeatureExtractor(model)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    wrist = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    many = fx.features({"front": frames, "observation.images.wrist": wrist})
    assert many.shape == (5, fx.feature_dim) and fx.feature_dim == 512
    assert many.dtype == np.float32 and np.abs(many).max() <= 1.0  # tanh embeddings
    one = fx.features({CAMS[0]: frames[2], CAMS[1]: wrist[2]})
    assert np.allclose(one[0], many[2], atol=1e-5)
    assert not any(p.requires_grad for p in fx.module.parameters())
    big = np.repeat(np.repeat(frames[:1], 2, axis=1), 2, axis=2)  # 64 x 64
    assert fx.features({CAMS[0]: big[0], CAMS[1]: big[0]}, resize=True).shape == (1, 512)
    for images, message in [
        ({CAMS[0]: frames[0]}, "missing"),
        ({CAMS[0]: frames[0], CAMS[1]: wrist[0], "top": wrist[0]}, "the model takes"),
        ({CAMS[0]: big[0], CAMS[1]: big[0]}, "64x64, the model takes 32x32"),
        ({CAMS[0]: frames[0].astype(float), CAMS[1]: wrist[0]}, "dtype float64"),
        ({CAMS[0]: frames[0, :, :, 0], CAMS[1]: wrist[0]}, "shape"),
        ({CAMS[0]: frames[:2], CAMS[1]: wrist[:3]}, "3 frames, other cameras have 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            camera_batch(images, CAMS, 32)


# ----------------------------------------------------------------------------- batches


def test_balanced_batches_and_single_class():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(5), np.zeros(995)].astype(np.uint8)
    picks = np.concatenate([data.balanced_indices(y, 32, rng) for _ in range(50)])
    assert abs(y[picks].mean() - 0.5) < 0.01
    only = data.balanced_indices(np.ones(10, np.uint8), 8, rng)  # one class: that class
    assert len(only) == 8 and ((only >= 0) & (only < 10)).all()


def test_random_shift_crops_the_padded_image():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (3, 2, 16, 16, 3), dtype=np.uint8)
    out = random_shift(images, 4, rng)
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4), (0, 0)), mode="edge")
    for i in range(3):
        for c in range(2):
            windows = [
                np.array_equal(out[i, c], padded[i, c, dy : dy + 16, dx : dx + 16])
                for dy in range(9)
                for dx in range(9)
            ]
            assert any(windows)
    shifted = sum(not np.array_equal(out[i, c], images[i, c]) for i in range(3) for c in range(2))
    assert shifted >= 4  # (a zero shift has probability 1/81 per image)
    assert np.array_equal(random_shift(images, 0, rng), images)


def test_every_worker_gets_success_episodes():
    shards = data.shard_episodes(list(range(10)), {1, 4, 7}, 2)
    assert sorted(sum(shards, [])) == list(range(10))
    assert all({1, 4, 7} & set(s) for s in shards)
    assert split_held_out([5, 2, 9, 7]) == ([2, 7], [5, 9])
    assert split_held_out([3]) == ([3], [3])


# ----------------------------------------------------------------------------- thresholds


def test_metrics_and_thresholds():
    probs = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1])
    m = metrics.binary_metrics(probs, y, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["precision"] == pytest.approx(2 / 3)
    t, rule = metrics.choose_threshold(probs, y)
    assert "best F1" in rule
    assert metrics.binary_metrics(probs, y, t)["f1"] == pytest.approx(0.8571, abs=1e-3)
    t, rule = metrics.choose_threshold(probs, y, min_precision=1.0)
    assert 0.6 < t <= 0.7 and "precision >= 1" in rule  # only 0.7 and 0.9 above it
    assert metrics.binary_metrics(probs, y, t)["precision"] == 1.0
    separable = np.array([0.01, 0.02, 0.4, 0.45, 0.5])
    t, _ = metrics.choose_threshold(separable, np.array([0, 0, 1, 1, 1]))
    assert 0.02 < t < 0.4  # halfway between the classes
    assert metrics.choose_threshold(probs, np.ones(6))[0] == 0.5
    cuts, precision, recall = metrics.pr_curve(probs, y)
    assert (np.diff(recall) <= 0).all() and recall[0] == 1 and recall[-1] == 0
    assert "success\t2\t1" in metrics.confusion_table(m)


# ----------------------------------------------------------------------------- on Ray


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("clf") / "ds"
    result = synth.run(
        synth.SynthConfig(
            out=str(root),
            episodes=6,
            seed=5,
            image_size=32,
            mix="expert=1,failing=1",
            operator=0.0,
            steps_after_success=6,
            format="v2.1",  # a test below rewrites one episode's own file
        ),
        out=lambda *a: None,
    )
    return root, result


def test_synth_records_after_success_and_writes_the_csv(tiny):
    root, result = tiny
    assert result.labels == labels.success_csv_path(root) and result.labels.exists()
    rows = labels.read_success_csv(result.labels)
    ds = LeRobotDataset(root)
    assert sorted(rows) == ds.episode_indices
    for meta in result.episodes:
        e = meta["episode_index"]
        reward = ds.read_episode(e, ["next.reward"])["next.reward"].to_numpy()
        y, keep = rows[e].arrays(len(reward))
        assert keep.all()
        if meta["success"]:
            first = int(np.flatnonzero(reward == 1)[0])
            # the image after the rewarded step shows the success; 6 more steps were recorded
            assert rows[e].success_start == first + 1 and len(reward) == first + 1 + 6
            assert y[first + 1 :].all() and reward[first:].all()
        else:
            assert rows[e].success_start is None and not reward.any()
    assert any(m["success"] for m in result.episodes)
    again = synth.SynthConfig(out=str(root.parent / "other"), episodes=1, steps_after_success=3)
    shutil.copy(result.labels, labels.success_csv_path(again.out))
    with pytest.raises(DatasetError, match="other_success_frames.csv: exists"):
        again.validate()
    with pytest.raises(DatasetError, match="--steps-after-success -1"):
        synth.SynthConfig(out="u", episodes=1, steps_after_success=-1).validate()


def test_train_checkpoint_threshold_mlflow_and_resume(tiny, tmp_path, mlflow_uri, capsys):
    root, result = tiny
    csv = str(result.labels)
    cfg = small_run(tmp_path, dataset=str(root), labels=csv, workers=2, steps=30, batch_size=8)
    cfg.update(image_size=32, checkpoint_every=10, holdout=0.4, name="clf", mlflow=True)
    trained = run(ClassifierTrainConfig.from_flags(**cfg))
    assert trained.step == 30 and 0 < trained.threshold < 1
    m = trained.metrics
    assert {"test_accuracy", "test_precision", "test_recall", "val_accuracy"} <= set(m)
    assert m["samples_per_s"] > 0
    meta = json.loads((Path(trained.checkpoint) / "classifier.json").read_text())
    assert meta["threshold"] == trained.threshold and meta["labels"] == str(Path(csv).resolve())
    assert set(meta["validation_episodes"]).isdisjoint(meta["test_episodes"])
    held = set(meta["validation_episodes"]) | set(meta["test_episodes"])
    assert len(held) == 2  # 40 % of 6 episodes

    scorer = load_reward_model(trained.checkpoint, device="cpu")
    assert scorer.threshold == trained.threshold and scorer.cameras == CAMS
    fx = load_feature_extractor(trained.checkpoint, device="cpu")
    ds = LeRobotDataset(root)
    frame = {k: next(iter(ds.iter_camera_frames(0, k))) for k in CAMS}
    feats = fx.features(frame)
    assert feats.shape == (1, fx.feature_dim)
    batch = camera_batch(frame, CAMS, 32)
    with torch.no_grad():
        expected = torch.sigmoid(scorer.model.head(torch.from_numpy(feats))).item()
    assert scorer.probabilities(batch)[0] == pytest.approx(expected, abs=1e-5)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-train-classifier")
    runs = client.search_runs([exp.experiment_id])
    assert any("test_accuracy" in r.data.metrics for r in runs)
    artifacts = {a.path for r in runs for a in client.list_artifacts(r.info.run_id)}
    assert {"confusion.tsv", "precision_recall.png"} <= artifacts

    done = run(ClassifierTrainConfig.from_flags(**cfg))  # finished: nothing to train
    assert (done.step, done.checkpoint, done.threshold) == (
        30,
        trained.checkpoint,
        trained.threshold,
    )
    with pytest.raises(DatasetError, match="trains another classifier: labels"):
        run(ClassifierTrainConfig.from_flags(**{**cfg, "labels": None}))
    argv = [str(root), "--no-mlflow", "--storage", str(tmp_path / "runs"), "--name", "clf"]
    assert (
        train_classifier.main([*argv, "--labels", csv, "--image-size", "32", "--steps", "30"]) == 0
    )
    out = capsys.readouterr().out
    assert "already trained to step 30" in out and "Threshold" in out


def test_training_errors_are_one_line(tiny, tmp_path, capsys):
    root, result = tiny
    argv = [str(root), "--no-mlflow", "--storage", str(tmp_path / "runs"), "--steps", "2"]
    bad = tmp_path / "bad.csv"
    bad.write_text("episode,success_start,env_reset_start\n0,3,\n9,2,\n")
    assert train_classifier.main([*argv, "--labels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:line 3: episode 9 is not in the dataset (0-5)" in err
    assert len(err.strip().splitlines()) == 1
    bad.write_text("0,500,\n")
    assert train_classifier.main([*argv, "--labels", str(bad)]) == 2
    assert "line 1: success_start 500 is past its end" in capsys.readouterr().err
    # the failed episodes alone hold no success frame
    failed = [m["episode_index"] for m in result.episodes if not m["success"]]
    bad.write_text("".join(f"{e},,\n" for e in failed))
    assert train_classifier.main([*argv, "--labels", str(bad)]) == 2
    assert "no success frames" in capsys.readouterr().err
    # next.reward: dense rewards are not labels
    copy = Path(shutil.copytree(root, tmp_path / "dense"))
    from pipelines.dataset import episode_data_path, read_columns, write_parquet

    path = episode_data_path(copy, 2)
    t = read_columns(path)
    i = t.column_names.index("next.reward")
    import pyarrow as pa

    t = t.set_column(i, "next.reward", pa.array(np.linspace(0, 1, t.num_rows, dtype=np.float32)))
    write_parquet(path, t)
    assert train_classifier.main([str(copy), *argv[1:]]) == 2
    assert "episode_000002.parquet (episode 2): next.reward is" in capsys.readouterr().err
    assert train_classifier.main([*argv, "--workers", "9"]) == 2
    assert "one worker would have none" in capsys.readouterr().err
    assert train_classifier.main([*argv, "--min-precision", "1.5"]) == 2
    assert "--min-precision 1.5" in capsys.readouterr().err


def test_load_frames_drops_the_reset_frames(tiny):
    root, _ = tiny
    ds = LeRobotDataset(root)
    n = ds.episode_length(0)
    frames = data.load_frames(
        ds, labels.EpisodeLabels(0, ((2, None),), reset_start=n - 3), CAMS, 32
    )
    assert len(frames) == n - 3 and frames.images.shape == (n - 3, 2, 32, 32, 3)
    assert frames.labels.tolist() == [0, 0] + [1] * (n - 5)
    first = next(iter(ds.iter_camera_frames(0, CAMS[1])))
    assert np.array_equal(frames.images[0, 1], first)


def test_an_encoder_without_a_feature_map_is_refused_in_one_line():
    from pipelines.classifier.model import ClassifierConfig
    from pipelines.vision.encoders import ENCODERS, spatial_encoders, trunk_of

    pooled = sorted(set(ENCODERS) - set(spatial_encoders()))
    assert pooled  # the registry has one (spatial_softmax: keypoints, not a feature map)
    with pytest.raises(ValueError, match="has no spatial feature map"):
        trunk_of(pooled[0])
    with pytest.raises(ValueError, match=r"encoder 'spatial_softmax': one of \['drqv2'"):
        ClassifierConfig(encoder="spatial_softmax", cameras=["observation.images.front"])
