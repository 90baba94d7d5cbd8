"""`flywheel sweep`: search spaces, YAML, concurrency and tables (pure), one sweep on Ray."""

import csv
import hashlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from pipelines import sweep, sweeps
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.runtime.cluster import ClusterError
from pipelines.sweeps.awbc_sweep import copy_dataset
from pipelines.sweeps.report import TrialRow

AWBC = sweeps.KINDS["awbc"]
REWARD = sweeps.KINDS["reward-threshold"]


# ----------------------------------------------------------------------------- search spaces


def test_parse_values():
    threshold = AWBC.param("threshold")
    assert sweeps.parse_values(threshold, "10,30,50") == [10.0, 30.0, 50.0]
    assert sweeps.parse_values(threshold, " 10 , 30,10") == [10.0, 30.0]  # distinct, in order
    assert sweeps.parse_values(threshold, [10, 70]) == [10.0, 70.0]
    assert sweeps.parse_values(threshold, 40) == [40.0]
    assert sweeps.parse_values(AWBC.param("n_slices"), "3,5.0") == [3, 5]
    for raw, match in (
        ("", "--threshold: no values"),
        ("10,,30", "--threshold '10,,30': an empty value"),
        ("10,abc", "'abc' is not a number"),
        ("10,120", "120 must be between 0 and 100"),
        ("nan", "not a finite number"),
    ):
        with pytest.raises(DatasetError, match=match):
            sweeps.parse_values(threshold, raw)
    with pytest.raises(DatasetError, match="not a whole number"):
        sweeps.parse_values(AWBC.param("n_slices"), "2.5")
    with pytest.raises(DatasetError, match="must be between 0 and 1"):
        sweeps.parse_values(REWARD.param("threshold"), "0.5,1.5")
    with pytest.raises(DatasetError, match="at least 0"):
        sweeps.parse_values(sweeps.KINDS["hilserl"].param("bc_weight"), "-0.1")


def test_grid_and_trial_names():
    space = {"threshold": [10.0, 30.0], "cfg_scale": [1.0, 1.5]}
    trials = sweeps.grid(space)
    assert len(trials) == 4 and trials[0] == {"threshold": 10.0, "cfg_scale": 1.0}
    names = [sweeps.trial_name(t) for t in trials]
    assert names[0] == "threshold=10,cfg_scale=1" and len(set(names)) == 4
    assert sweeps.trial_name({"n_slices": 3}) == "n_slices=3"


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_yaml_config_and_flags_override(tmp_path):
    good = _write(
        tmp_path / "sweep.yaml",
        "kind: awbc\nthreshold: [10, 30]\ncfg-scale: '1,1.5'\nsteps: 50\neval_episodes: 4\n",
    )
    space, options = sweeps.read_config_file(good, AWBC)
    assert space == {"threshold": [10.0, 30.0], "cfg_scale": [1.0, 1.5]}
    assert options == {"steps": 50, "eval_episodes": 4}
    args = sweep.build_parser("x").parse_args(
        ["awbc", "ds", "--config", good, "--threshold", "50", "--steps", "7"]
    )
    cfg = sweeps.config_from_args(args)
    assert cfg.space == {"threshold": [50.0], "cfg_scale": [1.0, 1.5]}  # the flag wins
    assert cfg.trial.steps == 7 and cfg.trial.eval_episodes == 4 and cfg.trial.every == 1

    for text, match in (
        ("treshold: [10]\n", r"unknown key 'treshold' for a awbc sweep \(known: kind, threshold"),
        ("kind: hilserl\n", "kind 'hilserl', but the command sweeps 'awbc'"),
        ("threshold: [10, 200]\n", "threshold 200: 200 must be between 0 and 100"),
        ("threshold: []\n", "no values"),
        ("steps: many\n", "steps 'many' is not an integer"),
        ("- 10\n- 30\n", "a mapping of parameters and options, not a list"),
        ("threshold: [10\n", "not valid YAML at line"),
    ):
        bad = _write(tmp_path / "bad.yaml", text)
        with pytest.raises(DatasetError, match=match) as e:
            sweeps.read_config_file(bad, AWBC)
        assert str(e.value).startswith(str(tmp_path / "bad.yaml"))
    with pytest.raises(DatasetError, match="cannot read it"):
        sweeps.read_config_file(tmp_path / "absent.yaml", AWBC)


def test_printed_config_reads_back(tmp_path, capsys):
    argv = ["awbc", "ds", "--threshold", "10,30", "--steps", "5", "--workers", "2"]
    with pytest.raises(SystemExit) as e:
        sweep.main([*argv, "--print-config"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    assert "trial:\n  steps: 5\n" in printed and "space:\n  threshold:\n" in printed
    path = _write(tmp_path / "printed.yaml", printed)
    args = sweep.build_parser("x").parse_args(["awbc", "--config", path, "--steps", "7"])
    cfg = sweeps.config_from_args(args)
    assert cfg.inputs == ["ds"] and cfg.space == {"threshold": [10.0, 30.0]}
    assert cfg.trial.steps == 7 and cfg.trial.workers == 2 and cfg.tune.reduction_factor == 3


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    storage = tmp_path / "runs"
    yaml_file = _write(tmp_path / "s.yaml", "thresholds: [1]\n")
    ds = tmp_path / "ds"
    ds.mkdir()
    for argv, needle in (
        (["bogus", str(ds)], "kind 'bogus': one of awbc, reward-threshold, hilserl"),
        (["awbc", str(ds)], "--threshold: a awbc sweep needs values"),
        (["awbc", str(ds), "--threshold", ""], "--threshold: no values"),
        (["awbc", str(ds), "--threshold", "10,x"], "'x' is not a number"),
        (["awbc", str(ds), "--threshold", "10", "--bc-weight", "1"], "--bc-weight: not a param"),
        (["awbc", str(ds), "--config", yaml_file], "unknown key 'thresholds'"),
        (["awbc", "--threshold", "10"], "sweep awbc: takes DATASET, got 0"),
        (["awbc", str(tmp_path / "nope"), "--threshold", "10"], "DATASET"),
        (["reward-threshold", "c", str(ds), "--threshold", "10"], "must be between 0 and 1"),
        (["awbc", str(ds), "--threshold", "10", "--steps", "0"], "--steps 0: at least 1"),
        (["awbc", str(ds), "--threshold", "10", "--name", "a/b"], "--name 'a/b'"),
        (["awbc", str(ds), "--threshold", "10"], "meta/info.json"),
        (["reward-threshold", str(ds), str(ds), "--threshold", "0.5"], "not a classifier"),
    ):
        argv = [*argv, "--storage", str(storage), "--no-mlflow"]
        assert sweep.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert not storage.exists()  # nothing written


def test_hilserl_sweep_checks_its_options(tmp_path, capsys):
    import importlib.util

    yaml_file = _write(tmp_path / "h.yaml", "bc_weight: [0, 0.5]\nhilserl: {no_such: 1}\n")
    argv = ["hilserl", "--config", yaml_file, "--storage", str(tmp_path / "r"), "--no-mlflow"]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err.strip()
    if importlib.util.find_spec("pipelines.hilserl") is None:
        assert err.endswith("sweep hilserl: this build has no HIL-SERL job (pipelines.hilserl)")
    else:
        assert err.endswith("hilserl option 'no_such': not an option a trial may set")
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_rerun_with_other_settings_is_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    spec = {"kind": "awbc", "space": {"threshold": [10.0, 30.0]}, "steps": 4}
    assert sweeps.check_spec(folder, spec) is False
    (folder / "sweep.json").write_text(json.dumps(spec))
    assert sweeps.check_spec(folder, spec) is True
    with pytest.raises(DatasetError, match=r"steps 4 \(this command: 8\); choose another --name"):
        sweeps.check_spec(folder, {**spec, "steps": 8})


# ----------------------------------------------------------------------------- resources


def test_concurrency_from_the_cluster():
    assert sweeps.concurrency({"CPU": 8.0}, {"CPU": 2.0}, trials=10) == 4
    assert sweeps.concurrency({"CPU": 8.0}, {"CPU": 2.0}, trials=3) == 3
    assert sweeps.concurrency({"CPU": 16.0, "GPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}, 5) == 2
    assert sweeps.concurrency({"CPU": 16.0, "GPU": 4.0}, {"CPU": 4.0, "GPU": 0.5}, 9) == 4
    assert sweeps.concurrency({"CPU": 2.0}, {"CPU": 4.0}, 3, asked=2) == 2  # autoscaling
    with pytest.raises(ClusterError, match="one trial needs 4 CPU, 1 GPU, the cluster has 8 CPU"):
        sweeps.concurrency({"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}, 3)


def test_concurrency_waits_when_asked(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_WAIT_FOR_RESOURCES", "1")
    assert sweeps.concurrency({"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}, 3) == 1


def test_trial_needs():
    cfg = sweeps.SweepConfig(
        "awbc", trial=sweeps.TrialSettings(workers=2, cpus_per_worker=3, gpus_per_worker=0.5)
    )
    assert sweeps.trial_needs(cfg) == {"CPU": 6.0, "GPU": 1.0}
    assert sweeps.trial_needs(sweeps.SweepConfig("reward-threshold")) == {"CPU": 1.0}
    assert sweeps.trial_needs(sweeps.SweepConfig("hilserl", hilserl={"collectors": 3})) == {
        "CPU": 4.0
    }


# ----------------------------------------------------------------------------- results


def _rows():
    return [
        TrialRow("threshold=10", {"threshold": 10.0}, "done", {"success_rate": 0.4}),
        TrialRow("threshold=30", {"threshold": 30.0}, "done", {"success_rate": 0.7}),
        TrialRow("threshold=50", {"threshold": 50.0}, "stopped early (ASHA)", {"l1": 0.9}),
        TrialRow("threshold=70", {"threshold": 70.0}, "error: boom", {}),
    ]


def test_status_of():
    assert sweeps.status_of(None, {"success_rate": 0.5}, "success_rate") == "done"
    assert sweeps.status_of(None, {"l1": 0.5}, "success_rate") == "stopped early (ASHA)"
    assert sweeps.status_of(None, {}, "success_rate") == "not run"
    error = RuntimeError("\x1b[36mray::trial\x1b[39m\nTraceback...\nDatasetError: ds: bad")
    assert sweeps.status_of(error, {}, "success_rate") == "error: DatasetError: ds: bad"


def test_table_and_csv():
    rows = _rows()
    assert sweeps.best_row(rows, "success_rate").trial == "threshold=30"
    table = sweeps.results_table(AWBC, rows)
    lines = table.splitlines()
    assert lines[0].split() == ["trial", "threshold", "success_rate", "l1", "status"]
    assert lines[2].startswith("* threshold=30") and lines[1].startswith("  threshold=10")
    assert "stopped early (ASHA)" in lines[3] and "error: boom" in lines[4]
    parsed = list(csv.DictReader(io.StringIO(sweeps.results_csv(AWBC, rows))))
    assert [r["trial"] for r in parsed] == [r.trial for r in rows]
    assert parsed[1]["success_rate"] == "0.7" and parsed[3]["success_rate"] == ""
    assert parsed[2]["status"] == "stopped early (ASHA)"


def test_metric_figure_draws_one_line_per_other_value():
    rows = [
        {"params": {"threshold": t, "cfg_scale": c}, "metrics": {"success_rate": t / 100 + c}}
        for t in (10.0, 30.0)
        for c in (1.0, 1.5)
    ]
    rows.append({"params": {"threshold": 50.0, "cfg_scale": 1.0}, "metrics": {}})
    fig = sweeps.metric_figure(rows, ["threshold", "cfg_scale"], "success_rate", "t")
    ax = fig.axes[0]
    data = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(data) == 2 and ax.get_xlabel() == "threshold"
    assert sorted(line.get_label() for line in data) == ["cfg_scale=1", "cfg_scale=1.5"]
    stopped = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(stopped) == 1 and list(stopped[0].get_xdata()) == [50.0, 50.0]


def test_copy_dataset_links_videos_and_copies_the_rest(tmp_path):
    src = tmp_path / "src"
    (src / "videos" / "chunk-000").mkdir(parents=True)
    (src / "data" / "chunk-000").mkdir(parents=True)
    (src / "videos" / "chunk-000" / "a.mp4").write_bytes(b"video")
    (src / "data" / "chunk-000" / "e.parquet").write_bytes(b"data")
    (tmp_path / "dst.partial").mkdir()  # an interrupted copy is redone
    dst = copy_dataset(src, tmp_path / "dst")
    video, data = dst / "videos/chunk-000/a.mp4", dst / "data/chunk-000/e.parquet"
    assert os.stat(video).st_ino == os.stat(src / "videos/chunk-000/a.mp4").st_ino
    assert os.stat(data).st_ino != os.stat(src / "data/chunk-000/e.parquet").st_ino
    assert data.read_bytes() == b"data" and not (tmp_path / "dst.partial").exists()
    data.write_bytes(b"changed")  # the copy is the trial's own
    assert (src / "data/chunk-000/e.parquet").read_bytes() == b"data"
    assert copy_dataset(src, dst).joinpath("data/chunk-000/e.parquet").read_bytes() == (
        b"changed"
    )  # a finished copy is kept


# ----------------------------------------------------------------------------- on Ray


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_awbc_sweep_resumes_its_failed_trial(tmp_path, ray_cluster, mlflow_uri, capsys):
    """Two trials; one fails (its copy is broken), the rerun retries it and keeps the other."""
    from pipelines import synth

    ds = tmp_path / "ds"
    synth.run(
        synth.SynthConfig(out=str(ds), episodes=4, seed=5, image_size=32, mix="expert=1,failing=1"),
        out=lambda *a: None,
    )
    before = _digest(ds)
    storage = tmp_path / "runs"
    folder = storage / "sweeps" / "s"
    broken = folder / "trials" / "threshold=50" / "dataset"
    broken.mkdir(parents=True)  # a copy without meta/: labeling it fails
    argv = [
        "awbc", str(ds), "--threshold", "30,50", "--name", "s", "--storage", str(storage),
        "--steps", "4", "--checkpoint-every", "2", "--batch-size", "4", "--image-size", "16",
        "--eval-episodes", "2", "--eval-seed", "7", "--grace-period", "3",
    ]  # fmt: skip
    assert sweep.main(argv) == 1
    captured = capsys.readouterr()
    assert "1 trial(s) failed (threshold=50)" in captured.err
    assert "2 trials over threshold, 2 at a time" in captured.out
    first = list(csv.DictReader((folder / "results.csv").open()))
    assert first[0]["trial"] == "threshold=30" and first[0]["status"] == "done"
    assert first[1]["status"].startswith("error: ") and "meta" in first[1]["status"]
    done = folder / "trials" / "threshold=30"
    checkpoints = sorted(p.name for p in (done / "runs" / "policy").glob("checkpoint_*"))
    report_mtime = (done / "eval.json").stat().st_mtime_ns

    shutil.rmtree(broken)
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "(resuming)" in out and "Best: threshold=" in out
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [r["status"] for r in rows] == ["done", "done"]
    for r in rows:
        assert 0 <= float(r["success_rate"]) <= 1 and r["episodes"] == "2"
        assert float(r["l1"]) > 0 and float(r["heldout_l1"]) > 0
    # the finished trial was not run again
    assert sorted(p.name for p in (done / "runs" / "policy").glob("checkpoint_*")) == checkpoints
    assert (done / "eval.json").stat().st_mtime_ns == report_mtime
    # same seeds for every trial; labels per trial; the user's dataset untouched
    for trial, threshold in (("threshold=30", 30.0), ("threshold=50", 50.0)):
        report = json.loads((folder / "trials" / trial / "eval.json").read_text())
        assert report["seeds"] == [7, 8]
        labeled = json.loads((folder / "trials" / trial / "labeled.json").read_text())
        assert labeled["threshold"] == threshold
        tasks = LeRobotDataset(folder / "trials" / trial / "dataset").tasks
        assert any("Advantage: positive" in t for t in tasks.values())
    assert _digest(ds) == before
    assert not any("Advantage" in t for t in LeRobotDataset(ds).tasks.values())
    assert (folder / "metric.png").read_bytes()[:4] == b"\x89PNG"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-sweep-awbc")
    runs = client.search_runs([exp.experiment_id])
    finished = {r.info.run_name: r for r in runs if r.info.status == "FINISHED"}
    assert {"threshold=30", "threshold=50", "summary"} <= set(finished)
    for name in ("threshold=30", "threshold=50"):
        assert "success_rate" in finished[name].data.metrics
        assert finished[name].data.params["threshold"] in ("30.0", "50.0")
    # the training reports reached Tune through TuneReportCallback (l1 at each checkpoint)
    history = client.get_metric_history(finished["threshold=50"].info.run_id, "l1")
    assert len(history) >= 2
    artifacts = {a.path for a in client.list_artifacts(finished["summary"].info.run_id)}
    assert {"results.csv", "metric.png"} <= artifacts
    assert np.isfinite(finished["summary"].data.metrics["best_success_rate"])
