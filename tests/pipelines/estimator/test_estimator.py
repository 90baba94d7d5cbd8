"""The advantage estimator: pairs, formulas, model, Ray Train training, Ray Data estimation."""

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import estimate, synth, train_estimator
from pipelines.dataset import (
    DatasetError,
    LeRobotDataset,
    episode_data_path,
    read_columns,
    write_parquet,
)
from pipelines.estimator import inference
from pipelines.estimator import training as estimator_training
from pipelines.estimator.config import KIND, EstimatorTrainConfig
from pipelines.estimator.data import (
    EpisodeFrames,
    advantages,
    check_dataset,
    lookahead,
    sample_pairs,
    training_batch,
)
from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig
from pipelines.runtime import checkpoints, cli
from pipelines.runtime.checkpoints import meta_name
from pipelines.runtime.schedule import split_episodes
from pipelines.vision.images import resize
from tests.helpers import label_from_estimate, small_run

# ----------------------------------------------------------------------------- pure parts


def test_pairs_take_another_frame_of_the_same_episode():
    rng = np.random.default_rng(0)
    lengths = np.array([1, 2, 50])
    ep, cur, hist = sample_pairs(lengths, 20000, rng)
    assert ((cur < lengths[ep]) & (hist < lengths[ep])).all()
    one = ep == 0
    assert (hist[one] == cur[one]).all()  # a one-frame episode pairs its frame with itself
    assert (hist[~one] != cur[~one]).all()
    assert abs(one.mean() - 1 / 53) < 0.005  # episodes drawn in proportion to their length
    big = ep == 2
    counts = np.bincount(hist[big & (cur == 10)], minlength=50)
    assert counts[10] == 0 and counts.min(initial=99, where=np.arange(50) != 10) > 0


def _episode(n, progress):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None, None] * np.ones(
        (n, 1, 4, 4, 3), np.uint8
    )
    return EpisodeFrames(0, images, np.zeros((n, 6), np.float32), np.asarray(progress, np.float32))


def test_training_targets():
    rng = np.random.default_rng(1)
    eps = [_episode(5, [0.0, 0.1, 0.3, 0.6, 1.0])]
    images, state, target = training_batch(eps, 64, rng, "kai0")
    assert images.shape == (64, 2, 1, 4, 4, 3) and state.shape == (64, 2, 6)
    hist, cur = images[:, 0, 0, 0, 0, 0].astype(int), images[:, 1, 0, 0, 0, 0].astype(int)
    spg = eps[0].progress
    assert np.allclose(target, np.clip(spg[cur] - spg[hist], -1, 1))
    assert (hist != cur).all()
    images, state, target = training_batch(eps, 16, rng, "pi06")
    assert images.shape == (16, 1, 1, 4, 4, 3)
    assert np.allclose(target, spg[images[:, 0, 0, 0, 0, 0].astype(int)])
    _, _, target = training_batch([_episode(1, [0.4])], 4, rng, "kai0")
    assert target.tolist() == [0, 0, 0, 0]


def test_lookahead_and_advantage_formulas():
    assert lookahead(3).tolist() == [2, 2, 2]
    assert lookahead(60)[:3].tolist() == [50, 51, 52] and lookahead(60)[-1] == 59
    v = np.array([0.9, 0.002, 0.005])  # V(0) is replaced by 0
    out = advantages(v, np.array([0.004, 0.001, 0.3]))
    assert out["absolute_value"].tolist() == pytest.approx([0, 0.002, 0.005])
    # f = 2 for every frame: gaps 2, 1, 0 -> scales 25, 50, 0
    assert out["absolute_advantage"].tolist() == pytest.approx([0.125, 0.15, 0.0])
    assert out["relative_advantage"].tolist() == pytest.approx([0.1, 0.05, 0.0])
    out = advantages(np.array([0.0, 0.5, 0.9]), None)
    assert "relative_advantage" not in out
    assert out["absolute_advantage"].tolist() == [1.0, 1.0, 0.0]  # clipped
    n = 120  # gap 50: no scaling
    v = np.linspace(0, 0.6, n)
    out = advantages(v, np.zeros(n))
    assert out["absolute_advantage"][10] == pytest.approx(v[60] - v[10])
    assert advantages(np.array([0.7]), np.array([0.2]))["absolute_advantage"].tolist() == [0.0]


def test_split_is_seeded_and_disjoint():
    train, held = split_episodes(list(range(50)), 0.2, 3)
    assert len(held) == 10 and not set(train) & set(held)
    assert (train, held) == split_episodes(list(range(50)), 0.2, 3)
    assert split_episodes([7], 0.2, 0) == ([7], [])


def test_model_parts_and_fixed_batches():
    cfg = EstimatorConfig(variant="kai0", cameras=["a", "b"], image_size=32)
    model = AdvantageEstimator(cfg).eval()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 255, (5, 2, 2, 32, 32, 3), dtype=np.uint8))
    state = torch.randn(5, 2, 6)
    with torch.no_grad():
        full = model(images, state)
        feats = model.encode(images.reshape(10, 2, 32, 32, 3)).reshape(5, 2, -1)
        assert torch.equal(full, model.value(feats, state))
    assert ((full >= -1) & (full <= 1)).all()
    # a frame's features do not depend on what it is batched with (fixed, padded batches)
    frames = images.reshape(10, 2, 32, 32, 3).numpy()
    alone = inference.encode_frames(model, frames[3:4], 8)
    together = inference.encode_frames(model, frames, 8)
    assert np.array_equal(alone[0], together[3])
    with pytest.raises(ValueError, match="encoder 'vit'"):
        EstimatorConfig(encoder="vit")


def test_episode_outputs_are_the_model_on_the_reference_pairs():
    cfg = EstimatorConfig(variant="kai0", cameras=["a"], image_size=32)
    model = AdvantageEstimator(cfg).eval()
    rng = np.random.default_rng(2)
    n = 60
    frames = rng.integers(0, 255, (n, 1, 32, 32, 3), dtype=np.uint8)
    state = rng.normal(size=(n, 6)).astype(np.float32)
    feats = inference.encode_frames(model, frames, 16)
    values, relative = inference.episode_outputs(model, feats, state, kai0=True)
    f = lookahead(n)
    with torch.no_grad():
        for i in (0, 7, 55):
            pair = torch.from_numpy(frames[[0, i]][None])
            v = model(pair, torch.from_numpy(state[[0, i]][None]))
            r = model(
                torch.from_numpy(frames[[i, f[i]]][None]), torch.from_numpy(state[[i, f[i]]][None])
            )
            assert values[i] == pytest.approx(float(v), abs=1e-5)
            assert relative[i] == pytest.approx(float(r), abs=1e-5)


def _with_parquet_images(root: Path, size: int = 24) -> dict[int, np.ndarray]:
    """Add a LeRobot `image` camera (PNG bytes inside the parquet files) to a dataset."""
    import cv2
    import pyarrow as pa

    from pipelines.labeling.progress_dataset import make_progress_dataset

    make_progress_dataset(root, episodes=3, min_length=5, max_length=9, seed=1)
    ds = LeRobotDataset(root)
    frames = {}
    for e in ds.episode_indices:
        t = ds.read_episode(e)
        rng = np.random.default_rng(e)
        frames[e] = rng.integers(0, 255, (t.num_rows, size, size, 3), dtype=np.uint8)
        cells = [
            {"bytes": cv2.imencode(".png", f[:, :, ::-1])[1].tobytes(), "path": None}
            for f in frames[e]
        ]
        typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        write_parquet(
            episode_data_path(root, e),
            t.append_column("observation.images.top", pa.array(cells, typ)),
        )
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.images.top"] = {
        "dtype": "image",
        "shape": [size, size, 3],
        "names": ["height", "width", "channel"],
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return frames


def test_cameras_stored_as_images_in_parquet(tmp_path):
    from pipelines.estimator.data import load_episode

    root = tmp_path / "images"
    frames = _with_parquet_images(root)
    ds = LeRobotDataset(root)
    key = "observation.images.top"
    assert ds.camera_keys == [key]
    assert check_dataset(ds, ds.episode_indices) == [key]
    for e, want in frames.items():
        assert np.array_equal(np.stack(list(ds.iter_camera_frames(e, key))), want)
        loaded = load_episode(ds, e, [key], 16)
        assert loaded.images.shape == (len(want), 1, 16, 16, 3)
        rows = list(inference.episode_frames(ds, e, [key], 16, rows=4))
        assert np.array_equal(np.concatenate([r["images"] for r in rows]), loaded.images)
        assert np.concatenate([r["frame"] for r in rows]).tolist() == list(range(len(want)))
    # a cell that is not an image names the file, the episode and the frame
    import pyarrow as pa

    path = episode_data_path(root, 1)
    t = read_columns(path)
    cells = t[key].to_pylist()
    cells[2] = {"bytes": b"not a png", "path": None}
    t = t.set_column(t.column_names.index(key), key, pa.array(cells, t.schema.field(key).type))
    write_parquet(path, t)
    with pytest.raises(DatasetError, match="episode 1 frame 2: .* not a decodable"):
        list(ds.iter_camera_frames(1, key))


# ----------------------------------------------------------------------------- on Ray


def test_estimate_reads_cameras_stored_in_parquet(tmp_path, ray_cluster):
    root = tmp_path / "images"
    frames = _with_parquet_images(root)
    cfg = EstimatorConfig(variant="pi06", cameras=["observation.images.top"], image_size=16)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.manual_seed(0)
    model = AdvantageEstimator(cfg)
    torch.save({"model": model.state_dict(), "step": 7}, ckpt / checkpoints.CHECKPOINT_STATE)
    meta = {"step": 7, "variant": "pi06", "model": cfg.to_dict()}
    (ckpt / meta_name(KIND)).write_text(json.dumps(meta))
    out = inference.run(inference.EstimateConfig(str(root), str(ckpt), batch_size=4))
    assert out.out_dir.name == "data_PI06_7" and out.episodes == 3
    model.eval()
    for e, want in frames.items():
        t = read_columns(episode_data_path(root, e, out.out_dir.name))
        assert t.num_rows == len(want) and "relative_advantage" not in t.column_names
        images = torch.from_numpy(np.stack([resize(f, 16) for f in want])[:, None, None])
        state = torch.from_numpy(np.stack(t["observation.state"].to_numpy(zero_copy_only=False)))
        with torch.no_grad():
            v = model(images, state[:, None].float()).numpy()
        v[0] = 0.0
        assert np.allclose(t["absolute_value"].to_numpy(), v, atol=1e-5)


def test_estimate_on_a_v30_dataset_lerobot_wrote(tmp_path, ray_cluster):
    name = "lerobot061_v30_h264"
    here = Path(__file__).resolve().parents[2] / "data" / name
    src = here if here.is_dir() else Path(__file__).resolve().parents[4] / "shared/datasets" / name
    if not src.is_dir():
        pytest.skip(f"{name} not present")
    import shutil

    root = Path(shutil.copytree(src, tmp_path / name))
    cfg = EstimatorConfig(variant="pi06", cameras=["observation.images.front"], image_size=16)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.manual_seed(0)
    model = AdvantageEstimator(cfg)
    checkpoints.write_checkpoint(
        ckpt,
        "estimator",
        {"model": model.state_dict(), "step": 7},
        {"step": 7, "variant": "pi06", "model": cfg.to_dict()},
    )
    out = inference.run(inference.EstimateConfig(str(root), str(ckpt), batch_size=4))
    assert out.episodes == 3
    ds = LeRobotDataset(root)
    files = sorted((root / out.out_dir.name).rglob("*.parquet"))
    assert [f.relative_to(root / out.out_dir.name) for f in files] == [
        Path("chunk-000/file-000.parquet")  # v3.0 layout: the three episodes in one file
    ]
    model.eval()
    for e in ds.episode_indices:
        t = ds.read_episode(e, data_dir=out.out_dir.name)
        original = ds.read_episode(e)
        assert t.select(original.column_names).equals(original)
        frames = list(ds.iter_camera_frames(e, "observation.images.front"))
        images = torch.from_numpy(np.stack([resize(f, 16) for f in frames])[:, None, None])
        state = torch.from_numpy(np.stack(t["observation.state"].to_numpy(zero_copy_only=False)))
        with torch.no_grad():
            v = model(images, state[:, None].float()).numpy()
        v[0] = 0.0
        assert np.allclose(t["absolute_value"].to_numpy(), v, atol=1e-5)
    res = label_from_estimate(root, out.out_dir.name)
    assert res.frames == 135 and LeRobotDataset(root).info["total_tasks"] == 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("est") / "ds"
    synth.run(
        synth.SynthConfig(  # v2.1: an error below names a per-episode video
            out=str(root),
            episodes=5,
            seed=4,
            image_size=32,
            mix="expert=1,hesitant=1",
            format="v2.1",
        ),
        out=lambda *a: None,
    )
    return root


def _worker_pids():
    """Train workers of this test session's Ray cluster (its processes descend from this one;
    other Ray clusters on the machine, other sessions' tests, are left alone)."""
    import psutil

    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("RayTrainWorker" in part for part in p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def test_training_resumes_after_a_killed_worker_and_on_rerun(tiny, tmp_path, monkeypatch, capsys):
    # a file store, which MLflow refuses unless allowed: the job allows it in its Ray workers
    mlflow_uri = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    cfg = small_run(tmp_path, dataset=str(tiny), image_size=32, holdout=0.2, checkpoint_every=10)
    cfg.update(name="kill", mlflow=True)
    del cfg["steps"]
    killed, trained = [], threading.Event()

    def killer():  # once a first checkpoint is registered, kill the worker's process
        snapshot = tmp_path / "runs" / "kill" / "checkpoint_manager_snapshot.json"
        while not trained.is_set() and not killed:  # no deadline: as long as training runs
            if snapshot.exists():
                for pid in _worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            trained.wait(0.05)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    try:
        result = estimator_training.run(EstimatorTrainConfig.from_flags(steps=120, **cfg))
    finally:
        trained.set()
    watcher.join(timeout=60)
    assert killed, "the worker was never killed"
    assert result.step == 120
    assert result.metrics["resumed_from"] >= 10  # picked up from a checkpoint, not from 0
    assert "eval_spearman" in result.metrics

    again = estimator_training.run(EstimatorTrainConfig.from_flags(steps=130, **cfg))
    assert again.step == 130 and again.metrics["resumed_from"] == 120
    done = estimator_training.run(
        EstimatorTrainConfig.from_flags(steps=100, **cfg)
    )  # nothing to do
    assert (done.step, done.checkpoint) == (130, again.checkpoint)
    with pytest.raises(DatasetError, match="variant 'kai0' .this command: 'pi06'"):
        estimator_training.run(EstimatorTrainConfig.from_flags(steps=140, variant="pi06", **cfg))
    argv = [str(tiny), "--no-mlflow", "--storage", str(tmp_path / "runs"), "--name", "other"]
    assert train_estimator.main([*argv, "--gpus-per-worker", "1", "--workers", "1"]) == 2
    assert "needs 1 GPU, the cluster has 0" in capsys.readouterr().err
    assert train_estimator.main([*argv, "--workers", "3"]) == 2
    assert "needs 3 CPU, the cluster has 2" in capsys.readouterr().err

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-train-estimator")
    runs = client.search_runs([exp.experiment_id])
    assert any("eval_spearman" in r.data.metrics for r in runs)
    images = {a.path for r in runs for a in client.list_artifacts(r.info.run_id)}
    assert "predicted_vs_true_progress.png" in images

    # Stage 2 with this checkpoint, then Stage 0 on its output
    out = inference.run(inference.EstimateConfig(dataset=str(tiny), checkpoint=again.checkpoint))
    assert out.out_dir.name == "data_KAI0_130" and out.episodes == 5
    ds = LeRobotDataset(tiny)
    first = {}
    for e in ds.episode_indices:
        path = episode_data_path(tiny, e, out.out_dir.name)
        t = read_columns(path)
        original = ds.read_episode(e)
        assert t.num_rows == original.num_rows
        assert t.select(original.column_names).equals(original)
        v = t["absolute_value"].to_numpy()
        assert v[0] == 0 and (np.abs(t["absolute_advantage"].to_numpy()) <= 1).all()
        assert "relative_advantage" in t.column_names
        first[e] = hashlib.sha256(path.read_bytes()).hexdigest()
    # resumable: nothing left to do
    assert inference.run(inference.EstimateConfig(str(tiny), again.checkpoint)).skipped == 5
    # new data carries no ground truth: estimation needs none of the progress columns, and is
    # deterministic (the same outputs when done again)
    import shutil

    fresh = Path(shutil.copytree(tiny, tmp_path / "fresh"))
    truth = ["progress", "stage_progress_gt", "progress_gt"]
    for e in ds.episode_indices:
        write_parquet(episode_data_path(fresh, e), ds.read_episode(e).drop(truth))
    for e in (1, 3):
        episode_data_path(fresh, e, out.out_dir.name).unlink()
    stale = episode_data_path(fresh, 0, out.out_dir.name)
    stale.write_bytes(b"computed from the old files")
    # the source files changed, so the manifest differs: every file is computed again
    redo = inference.run(inference.EstimateConfig(str(fresh), again.checkpoint))
    assert redo.episodes == 5 and redo.skipped == 0
    assert read_columns(stale).num_rows == ds.episode_length(0)
    for e in ds.episode_indices:
        before = read_columns(episode_data_path(tiny, e, out.out_dir.name))
        after = read_columns(episode_data_path(fresh, e, out.out_dir.name))
        assert not set(truth) & set(after.column_names)
        for col in ("absolute_value", "absolute_advantage", "relative_advantage"):
            assert np.array_equal(after[col].to_numpy(), before[col].to_numpy()), col
    for e in (0, 2):  # byte for byte when nothing changed
        path = episode_data_path(tiny, e, out.out_dir.name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first[e]
    # a checkpoint for another robot is refused before anything runs
    info = json.loads((fresh / "meta" / "info.json").read_text())
    info["features"]["observation.state"]["shape"] = [7]
    (fresh / "meta" / "info.json").write_text(json.dumps(info))
    code = estimate.main([str(fresh), "--checkpoint", again.checkpoint])
    assert code == 2 and "observation.state has shape [7]" in capsys.readouterr().err
    res = label_from_estimate(tiny, out.out_dir.name)
    assert res.frames == ds.info["total_frames"]


def test_undecodable_video_is_a_one_line_error(tiny, tmp_path, capsys):
    import shutil

    root = Path(shutil.copytree(tiny, tmp_path / "broken"))
    ds = LeRobotDataset(root)
    ds.video_file(0, "observation.images.wrist").write_bytes(
        b"\x00\x00\x00\x1cftypav01" + b"\0" * 99
    )
    code = train_estimator.main(
        [str(root), "--steps", "2", "--no-mlflow", "--storage", str(tmp_path / "runs")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    codec = ds.features["observation.images.wrist"]["info"]["video.codec"]
    assert "episode_000000.mp4" in err and f"codec {codec}" in err
    code = estimate.main([str(root), "--checkpoint", str(tmp_path / "nope")])
    assert code == 2 and "not an estimator checkpoint" in capsys.readouterr().err


def test_missing_stage_progress_is_a_one_line_error(tiny, tmp_path, capsys):
    import shutil

    root = Path(shutil.copytree(tiny, tmp_path / "nospg"))
    path = episode_data_path(root, 0)
    write_parquet(path, read_columns(path).drop(["stage_progress_gt"]))
    code = train_estimator.main([str(root), "--steps", "2", "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "missing column 'stage_progress_gt'" in err

    shutil.copy(episode_data_path(tiny, 0), path)
    episode_data_path(root, 3).write_bytes(b"garbage")  # every file is checked up front
    code = train_estimator.main([str(root), "--steps", "2", "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "episode_000003.parquet: unreadable parquet file" in err


def test_a_dataset_error_on_a_worker_is_found_in_ray_trains_error():
    from ray.train import WorkerGroupError

    wrapped = RuntimeError("task failed")
    wrapped.cause = DatasetError("data/x.parquet: missing column 'state'")
    err = WorkerGroupError("rank 1 failed", {0: RuntimeError("other"), 1: wrapped})
    assert str(cli.dataset_error(err)) == "data/x.parquet: missing column 'state'"
    assert cli.dataset_error(WorkerGroupError("x", {0: ValueError()})) is None
