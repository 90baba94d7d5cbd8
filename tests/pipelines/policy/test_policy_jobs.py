"""Stage 3 end to end: train-policy on Ray Train (and resume), eval-policy, and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipelines import eval_policy, label, synth, train_policy
from pipelines.dataset import (
    DatasetError,
    LeRobotDataset,
    episode_data_path,
    read_columns,
    write_parquet,
)
from pipelines.policy import training as train
from pipelines.policy.config import PolicyTrainConfig
from pipelines.runtime.checkpoints import read_meta, write_checkpoint


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(unlabeled, labeled) copies of one tiny synthesized dataset (32 px cameras)."""
    base = tmp_path_factory.mktemp("policy")
    raw = base / "raw"
    synth.run(
        synth.SynthConfig(  # v2.1: the errors below name its per-episode files
            out=str(raw), episodes=6, seed=5, image_size=32, mix="expert=1,failing=1", format="v2.1"
        ),
        out=lambda *a: None,
    )
    labeled = Path(shutil.copytree(raw, base / "labeled"))
    label.run(label.LabelConfig(str(labeled), threshold=30, mlflow=False), out=lambda *a: None)
    return raw, labeled


def _argv(dataset, storage, *extra):
    return [
        str(dataset), "--workers", "1", "--batch-size", "4", "--image-size", "16",
        "--storage", str(storage), *extra,
    ]  # fmt: skip


def _checkpoint_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("Checkpoint: "))[12:]


def test_train_resume_and_evaluate(datasets, tmp_path, mlflow_uri, ray_cluster, capsys):
    _, labeled = datasets
    storage = tmp_path / "runs"
    recipe = ["--weighting", "iql", "--balance-data-types", "--holdout-episodes", "5"]
    argv = _argv(labeled, storage, "--name", "awbc", "--checkpoint-every", "2", *recipe)
    assert train_policy.main([*argv, "--steps", "4"]) == 0
    first = _checkpoint_line(capsys.readouterr().out)
    meta = read_meta(first, "policy")
    assert meta["step"] == 4 and meta["kind"] == "policy"
    assert meta["env"] == {
        "task": "reach_grasp",
        "image_size": 32,
        "fps": 10,
        "action_mode": "joint",
    }
    assert meta["model"]["state_dim"] == 6 and meta["model"]["chunk_size"] == 10
    assert np.array(meta["normalization"]["action"]["std"]).shape == (10, 6)
    assert meta["held_episodes"] == [5] and 5 not in meta["train_episodes"]
    assert meta["metrics"]["cpu_seconds"] > 0 and "weight_ess" in meta["metrics"]

    # the same command with more steps resumes from step 4
    flags = dict(
        dataset=str(labeled), workers=1, batch_size=4, image_size=16, storage=str(storage),
        name="awbc", checkpoint_every=2, weighting="iql", balance_data_types=True,
        holdout_episodes=[5], steps=6,
    )  # fmt: skip
    resumed = train.run(PolicyTrainConfig.from_flags(**flags))
    assert resumed.step == 6 and resumed.metrics["resumed_from"] == 4
    assert resumed.metrics["cpu_seconds"] > meta["metrics"]["cpu_seconds"]
    assert "heldout_l1" in resumed.metrics
    ckpt = resumed.checkpoint
    with pytest.raises(DatasetError, match="weighting 'iql' .this command: 'none'"):
        train.run(PolicyTrainConfig.from_flags(**{**flags, "weighting": "none", "steps": 8}))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("flywheel-train-policy").experiment_id]
    )
    assert any({"l1", "weight_ess", "v_loss"} <= set(r.data.metrics) for r in runs)
    assert any(r.data.params.get("weighting") == "iql" for r in runs)
    artifacts = {a.path for r in runs for a in client.list_artifacts(r.info.run_id)}
    assert "predicted_vs_recorded_actions.png" in artifacts

    # eval-policy: the policy under both prompts and a scripted controller, on the same seeds
    report = tmp_path / "report.json"
    code = eval_policy.main(
        [
            ckpt, "--episodes", "2", "--seed", "40", "--videos", "1", "--report", str(report),
            "--compare", f"{ckpt}#prompt=negative#name=negative",
            "--compare", f"{ckpt}#cfg=1.5#name=guided", "--compare", "controller:expert",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    rep = json.loads(report.read_text())
    assert rep["seeds"] == [40, 41] and rep["env"]["image_size"] == 32
    names = [a["name"] for a in rep["arms"]]
    assert names[1:] == ["negative", "guided", "controller:expert"]
    for arm in rep["arms"]:
        assert arm["episodes"] == 2 and arm["seeds"] == [40, 41]
        assert {"successes", "success_rate", "ci95", "mean_steps_to_success"} <= set(arm)
    expert = rep["arms"][3]
    assert expert["success"] == [True, True] and expert["mean_steps_to_success"] > 0
    assert [c["arm"] for c in rep["comparisons"]] == names[1:]
    assert all(0 <= c["mcnemar_p"] <= 1 for c in rep["comparisons"])
    assert "McNemar p" in out and "Wilson 95%" in out
    runs = client.search_runs([client.get_experiment_by_name("flywheel-eval-policy").experiment_id])
    videos = [a.path for a in client.list_artifacts(runs[0].info.run_id, "videos/arm3")]
    assert len(videos) == 1 and videos[0].endswith(".mp4")

    # one process, without Ray: the same episodes, the same outcomes (paired, deterministic);
    # a run folder stands for its latest checkpoint
    again = tmp_path / "again.json"
    code = eval_policy.main(
        [str(storage / "awbc"), "--episodes", "2", "--seed", "40", "--one-process", "--no-mlflow",
         "--report", str(again), "--compare", "controller:expert"]
    )  # fmt: skip
    assert code == 0
    one = json.loads(again.read_text())
    assert one["arms"][0]["name"] == "awbc:positive" and one["mode"] == "one process"
    for a, b in zip(one["arms"], [rep["arms"][0], rep["arms"][3]], strict=True):
        assert (a["success"], a["steps"]) == (b["success"], b["steps"])


# ----------------------------------------------------------------------------- bad input


def _fails(main, argv, capsys, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _with_column(src: Path, dst: Path, name: str, values_of) -> Path:
    root = Path(shutil.copytree(src, dst))
    ds = LeRobotDataset(root)
    for e in ds.episode_indices:
        path = episode_data_path(root, e)
        t = read_columns(path)
        values = values_of(e, t.num_rows)
        if name in t.column_names:
            t = t.set_column(t.column_names.index(name), name, pa.array(values, pa.float32()))
        else:
            t = t.append_column(name, pa.array(values, pa.float32()))
        write_parquet(path, t)
    return root


def test_bad_training_input_is_one_line_and_writes_nothing(datasets, tmp_path, capsys):
    raw, labeled = datasets
    storage = tmp_path / "runs"
    main = train_policy.main
    _fails(main, _argv(raw, storage, "--no-mlflow"), capsys, "--conditioning prompt needs "
           "advantage labels", "meta")  # fmt: skip
    _fails(main, _argv(labeled, storage, "--no-mlflow", "--weighting", "awr"), capsys,
           "episode_000000.parquet: no advantage column 'absolute_advantage'")  # fmt: skip
    _fails(main, _argv(labeled, storage, "--no-mlflow", "--weighting", "awr",
                       "--advantage-column", "data_type"), capsys,
           "column 'data_type' is string, not a float column")  # fmt: skip
    for column, bad, weighting, needle in (
        ("absolute_advantage", (2, 3), "awr", "episode_000002.parquet: NaN or infinite "
         "'absolute_advantage' at episode 2 frame 3"),
        ("next.reward", (1, 0), "iql", "NaN or infinite 'next.reward' at episode 1 frame 0"),
    ):  # fmt: skip
        broken = _with_column(
            labeled, tmp_path / f"nan_{weighting}", column,
            lambda e, n, bad=bad: [float("nan") if (e, i) == bad else 0.0 for i in range(n)],
        )  # fmt: skip
        _fails(main, _argv(broken, storage, "--no-mlflow", "--weighting", weighting), capsys,
               needle)  # fmt: skip
    _fails(main, _argv(labeled, storage, "--no-mlflow", "--data-type-weights", "robot=2"),
           capsys, "--data-type-weights 'robot=2'")  # fmt: skip
    _fails(main, _argv(labeled, storage, "--no-mlflow", "--indicator-dropout", "1.5"), capsys,
           "--indicator-dropout 1.5")  # fmt: skip
    _fails(main, _argv(labeled, storage, "--no-mlflow", "--data-dir", "data_KAI0_9"), capsys,
           "data_KAI0_9/chunk-000/episode_000000.parquet: missing")  # fmt: skip
    assert not storage.exists()


def _fake_checkpoint(labeled: Path, folder: Path, **model_changes) -> str:
    """A policy checkpoint as train-policy writes it (untrained weights), without Ray."""
    from pipelines.policy.model import ChunkPolicy, PolicyConfig

    meta = train.prepare(PolicyTrainConfig.from_flags(dataset=str(labeled), image_size=16)).meta
    model = ChunkPolicy(PolicyConfig(**meta["model"]))
    meta["model"].update(model_changes)
    folder.mkdir(parents=True)
    write_checkpoint(
        folder, "policy", {"model": model.state_dict(), "step": 0}, {**meta, "step": 0}
    )
    return str(folder)


def test_bad_evaluation_input_is_one_line_and_writes_nothing(datasets, tmp_path, capsys):
    _, labeled = datasets
    report = tmp_path / "report.json"
    good = _fake_checkpoint(labeled, tmp_path / "good")
    main = eval_policy.main
    base = ["--episodes", "1", "--no-mlflow", "--report", str(report)]
    _fails(main, [good, *base, "--prompt", "grasp the blue cube"], capsys,
           "--prompt 'grasp the blue cube' matches no task of the policy")  # fmt: skip
    estimator = tmp_path / "estimator"
    estimator.mkdir()
    write_checkpoint(estimator, "estimator", {"model": {}, "step": 1}, {"step": 1})
    _fails(main, [str(estimator), *base], capsys, "an estimator checkpoint; eval-policy "
           "evaluates policies")  # fmt: skip
    _fails(main, [good, *base, "--compare", str(estimator)], capsys, "an estimator checkpoint")
    wide = _fake_checkpoint(labeled, tmp_path / "wide", state_dim=7)
    _fails(main, [wide, *base], capsys, "observation.state has 7 dimensions, the simulator's 6")
    ee = _fake_checkpoint(labeled, tmp_path / "ee", action_dim=4)
    _fails(main, [ee, *base], capsys, "action has 4 dimensions, the simulator's (joint mode) 6")
    _fails(main, [good, *base, "--compare", "controller:juggler"], capsys,
           "controller:juggler: no such controller")  # fmt: skip
    _fails(main, [str(tmp_path / "nowhere"), *base], capsys, "no such checkpoint")
    _fails(main, [good, *base, "--cfg-scale", "2", "--prompt", "none"], capsys,
           "guidance needs a labeled prompt")  # fmt: skip
    assert not report.exists()
