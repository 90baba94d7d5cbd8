"""The recap value through the command lines: a LeRobot recording with outcomes only, through
`flywheel outcomes`, `train-estimator --variant recap` and `estimate`; the bad inputs, each one
line, exit 2 and nothing written; and estimate's writer lock."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import estimate, outcomes, train_estimator
from pipelines.dataset import LeRobotDataset
from pipelines.estimator.manifest import MANIFEST
from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig
from pipelines.estimator.value import n_step_advantages
from pipelines.recap.targets import episode_targets
from pipelines.runtime.checkpoints import write_checkpoint
from tests.helpers import label_from_estimate
from tests.pipelines.estimator.test_estimator import _with_parquet_images

NAME = "lerobot061_v30_recording"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "datasets"
CAMERAS = ["observation.images.front", "observation.images.wrist"]
TASK = "reach and grasp the red cube"


@pytest.fixture()
def recording(tmp_path) -> Path:
    """A copy of the LeRobot 0.6.1 recording (v3.0, AV1, no progress column), no outcomes."""
    src = SHARED / NAME
    if not src.is_dir():
        pytest.skip(f"{NAME} not present")
    return Path(shutil.copytree(src, tmp_path / NAME))


def files_of(root: Path) -> dict[str, str]:
    """Every file under `root` and its sha256 (nothing written: equal before and after)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fake_checkpoint(folder: Path, variant: str, cameras=CAMERAS, **meta) -> str:
    """An untrained estimator checkpoint of `variant` (what estimate reads of one)."""
    cfg = EstimatorConfig(variant=variant, cameras=cameras, image_size=16)
    torch.manual_seed(0)
    model = AdvantageEstimator(cfg)
    folder.mkdir(parents=True)
    body = {"step": 3, "variant": variant, "model": cfg.to_dict(), "metrics": {}, **meta}
    write_checkpoint(folder, "estimator", {"model": model.state_dict(), "step": 3}, body)
    return str(folder)


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------- end to end


def test_a_lerobot_recording_through_outcomes_recap_training_and_estimate(
    recording, tmp_path, mlflow_uri, ray_cluster, capsys
):
    root, runs = recording, tmp_path / "runs"
    csv = SHARED / f"{NAME}_outcomes.csv"
    assert outcomes.main([str(root), "--from", f"csv:{csv}"]) == 0
    capsys.readouterr()
    flags = ["--steps", "4", "--workers", "1", "--batch-size", "8", "--image-size", "16"]
    flags += ["--checkpoint-every", "4", "--storage", str(runs), "--holdout", "0.25"]
    flags += ["--seed", "2"]  # held out: episodes 1 (a failure), 2 and 8
    assert train_estimator.main([str(root), "--variant", "recap", *flags]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err  # successes and failures among the training episodes
    ckpt = Path(out.split("Checkpoint: ")[1].strip())
    meta = json.loads((ckpt / "estimator.json").read_text())
    assert meta["variant"] == "recap" and meta["model"]["cameras"] == CAMERAS
    recap = meta["recap"]
    assert recap["bins"] == 201 and recap["t_max"] == {TASK: 200}
    assert recap["c_fail_coef"] == 1.0 and recap["default_outcome"] is None
    trained = recap["outcomes"]
    assert (trained["success"], trained["failure"], trained["defaulted"]) == (8, 1, 0)
    assert recap["state_normalization"]["source"] == "meta/stats.json"
    for key in ("eval_mae", "eval_spearman_success", "eval_auroc_midpoint"):
        assert np.isfinite(meta["metrics"][key]), key

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-train-estimator")
    (run,) = client.search_runs([exp.experiment_id])
    assert "eval_auroc_midpoint" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "predicted_vs_target_value.png" in artifacts

    # Stage 2: V and the N-step advantage of every frame
    argv = [str(root), "--checkpoint", str(ckpt), "--batch-size", "16"]
    assert estimate.main(argv) == 0
    assert "0 already done" in capsys.readouterr().out
    out_dir = root / "data_RECAP_4"
    manifest = json.loads((out_dir / MANIFEST).read_text())
    assert manifest["recap"]["n_step"] == 50 and manifest["recap"]["outcomes"]["success"] == 10
    assert manifest["checkpoint"]["path"] == str(ckpt.resolve())
    ds = LeRobotDataset(root)
    values = {}
    for e in ds.episode_indices:
        t = ds.read_episode(e, data_dir=out_dir.name)
        original = ds.read_episode(e)
        assert t.select(original.column_names).equals(original)
        v = t["absolute_value"].to_numpy()
        a = t["absolute_advantage"].to_numpy()
        assert ((v >= -1) & (v <= 0)).all() and np.isfinite(a).all()
        returns = episode_targets(len(v), ds.episode_outcome(e), 200, 1.0)
        assert np.allclose(a, n_step_advantages(v, returns, -1 / 400, 50), atol=1e-6)
        values[e] = v
    # the same manifest: resumed (nothing to do), also with the run folder standing for its
    # latest checkpoint; another N: everything computed again
    assert estimate.main([str(root), "--checkpoint", str(ckpt.parent), "--batch-size", "16"]) == 0
    assert "12 already done" in capsys.readouterr().out
    assert estimate.main([*argv, "--n-step", "10"]) == 0
    assert "0 already done" in capsys.readouterr().out
    for e in ds.episode_indices:
        t = ds.read_episode(e, data_dir=out_dir.name)
        v, a = t["absolute_value"].to_numpy(), t["absolute_advantage"].to_numpy()
        assert np.array_equal(v, values[e])  # the same frames, encoded alike
        returns = episode_targets(len(v), ds.episode_outcome(e), 200, 1.0)
        assert np.allclose(a, n_step_advantages(v, returns, -1 / 400, 10), atol=1e-6)
    # Stage 0 takes the output as it takes kai0's
    assert label_from_estimate(root, out_dir.name).frames == 840
    # labeling adds ', Advantage: ...' to the episodes' task texts; the value's task (its input
    # and its T_max) stays the base text, so the same estimate is still the one on disk
    assert LeRobotDataset(root).episodes[0]["tasks"][0] != TASK
    assert estimate.main([*argv, "--n-step", "10"]) == 0
    assert "12 already done" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad input


def test_recap_without_outcomes_is_refused_in_one_line(recording, tmp_path, capsys):
    before = files_of(recording)
    runs = tmp_path / "runs"
    code = train_estimator.main(
        [str(recording), "--variant", "recap", "--no-mlflow", "--storage", str(runs)]
    )
    assert code == 2
    one_line_error(capsys, "12 episode(s) without an outcome", "flywheel outcomes", "--default")
    assert not runs.exists()
    ckpt = fake_checkpoint(
        tmp_path / "ckpt", "recap", recap={"c_fail_coef": 1.0, "t_max": {TASK: 200}}
    )
    assert estimate.main([str(recording), "--checkpoint", ckpt]) == 2
    one_line_error(capsys, "without an outcome", "flywheel outcomes")
    assert files_of(recording) == before


def test_options_that_do_not_fit_the_variant_are_refused(recording, tmp_path, capsys):
    before = files_of(recording)
    runs = ["--no-mlflow", "--storage", str(tmp_path / "runs")]
    for argv, needles in (
        (["--variant", "pi06", "--c-fail-coef", "2"], ["--c-fail-coef 2.0", "recap only"]),
        (["--default-outcome", "failure"], ["--default-outcome failure", "recap only"]),
        (["--variant", "recap", "--c-fail-coef", "-1"], ["--c-fail-coef -1.0: a number >= 0"]),
    ):
        assert train_estimator.main([str(recording), *argv, *runs]) == 2
        one_line_error(capsys, *needles)
    progress = fake_checkpoint(tmp_path / "kai0", "kai0")
    recap = fake_checkpoint(tmp_path / "recap", "recap", recap={"c_fail_coef": 1.0})
    for argv, needles in (
        (["--checkpoint", recap, "--n-step", "0"], ["--n-step 0: at least 1"]),
        (["--checkpoint", recap, "--n-step", "-5"], ["--n-step -5: at least 1"]),
        (["--checkpoint", progress, "--n-step", "10"], ["--n-step 10", "kai0 progress"]),
        (
            ["--checkpoint", progress, "--default-outcome", "failure"],
            ["--default-outcome failure: for recap checkpoints only"],
        ),
    ):
        assert estimate.main([str(recording), *argv]) == 2
        one_line_error(capsys, *needles)
    assert files_of(recording) == before
    assert not (tmp_path / "runs").exists()


def test_a_run_of_the_other_variant_is_not_resumed(tmp_path, capsys):
    root = tmp_path / "ds"
    _with_parquet_images(root)  # cameras, stage_progress_gt and, below, outcomes
    csv = tmp_path / "outcomes.csv"
    csv.write_text("episode_index,success\n0,1\n1,0\n2,1\n")
    assert outcomes.main([str(root), "--from", f"csv:{csv}"]) == 0
    capsys.readouterr()
    runs = tmp_path / "runs"
    cams = ["observation.images.top"]
    fake_checkpoint(runs / "was-recap" / "checkpoint_000001", "recap", cams, recap={})
    fake_checkpoint(runs / "was-kai0" / "checkpoint_000001", "kai0", cams)
    before = files_of(tmp_path)
    common = ["--no-mlflow", "--storage", str(runs), "--image-size", "16", "--steps", "9"]
    code = train_estimator.main([str(root), "--variant", "kai0", "--name", "was-recap", *common])
    assert code == 2
    one_line_error(capsys, "trains another estimator", "variant 'recap' (this command: 'kai0')")
    code = train_estimator.main([str(root), "--variant", "recap", "--name", "was-kai0", *common])
    assert code == 2
    one_line_error(capsys, "variant 'kai0' (this command: 'recap')", "choose another --name")
    assert files_of(tmp_path) == before


def test_every_training_episode_of_one_outcome_warns_once(tmp_path, capsys):
    root = tmp_path / "ds"
    _with_parquet_images(root)
    assert outcomes.main([str(root), "--from", "set:0,1,2=success"]) == 0
    capsys.readouterr()
    # the run's name is taken by another model: it stops there, after the outcomes are read
    runs = tmp_path / "runs"
    fake_checkpoint(runs / "taken" / "checkpoint_000001", "kai0", ["observation.images.top"])
    argv = [str(root), "--variant", "recap", "--no-mlflow", "--storage", str(runs)]
    assert train_estimator.main([*argv, "--name", "taken"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "trains another estimator" in err[1]
    assert err[0].startswith("warning: every training episode is a success: the value can")


# ----------------------------------------------------------------------------- the lock


def test_estimate_holds_the_datasets_writer_lock(recording, tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "ckpt", "pi06")
    holder = (
        "import sys\n"
        "from pipelines.dataset import exclusive_writer\n"
        "with exclusive_writer(sys.argv[1], 'another writer'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(recording)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        before = files_of(recording)
        assert estimate.main([str(recording), "--checkpoint", ckpt]) == 2
        one_line_error(capsys, str(recording), "another writer")
        assert files_of(recording) == before
        assert not list(recording.glob("data_*"))
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
    assert proc.returncode == 0
