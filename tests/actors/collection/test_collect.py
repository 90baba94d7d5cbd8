"""`flywheel collect`: the dataset and log seed 000 specifies, a durable log, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from actors.collection import driver
from actors.collection.config import CollectConfig
from actors.collection.rollout import collect_episode
from pipelines import collect
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.selection.propensity import (
    LOG_FIELDS,
    LOG_NAME,
    PropensityLog,
    dataset_log,
    read_log,
    validate_propensities,
)


def small(out, **kw):
    args = dict(out=str(out), episodes=2, image_size=32, critical="grasp+every:6", seed=3)
    args["format"] = "v2.1"  # these tests read the episodes' own files (v2.1's layout)
    args.update(kw)
    return CollectConfig.from_flags(**args)


def episode_columns(out, ep: int) -> tuple:
    """An episode's parquet file and its columns (as lists)."""
    path = out / f"data/chunk-000/episode_{ep:06d}.parquet"
    return path, pq.read_table(path).to_pydict()


@pytest.fixture(scope="module")
def collected(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "ds"
    out.mkdir()  # what an interrupted (killed) collect left: its log lines and an episode
    (out / LOG_NAME).write_text(good_entry(collection_id="killed") + "\n")
    (out / "data/chunk-000").mkdir(parents=True)
    (out / "data/chunk-000/episode_000009.parquet").write_bytes(b"torn")
    result = driver.run(small(out, selector="epsilon_greedy", scorer="expert", epsilon=0.3))
    return out, result


def test_dataset_and_log_are_seed_000s(collected):
    out, result = collected
    ds = LeRobotDataset(out)
    feats = ds.features
    assert feats["action_propensity"] == {"dtype": "float32", "shape": [1], "names": None}
    assert feats["candidate_actions"]["shape"] == [4, 6]
    assert feats["action"]["shape"] == [6]
    log = read_log(out / LOG_NAME)
    assert len(log) == result.frames + 1 == result.log_lines
    assert log[0]["collection_id"] == "killed"  # the interrupted run's line stays
    assert not (out / "data/chunk-000/episode_000009.parquet").exists()
    assert len(dataset_log(out)) == result.frames  # readers keep this run's lines
    assert all(set(LOG_FIELDS) <= set(e) for e in log)
    by_frame = dataset_log(out)
    statuses = set()
    for ep in range(2):
        path, t = episode_columns(out, ep)
        prop = np.array(t["action_propensity"], np.float32)
        cands = np.array(t["candidate_actions"], np.float32)
        sel = np.array(t["selected_candidate"])
        action = np.array(t["action"], np.float32)
        validate_propensities(
            path,
            prop,
            np.array(t["frame_index"]),
            np.array(t["episode_index"]),
            cands.shape[1],
            sel,
            by_frame,
        )
        statuses |= set(t["approval_status"])
        assert set(t["selector_mode"]) == {"epsilon_greedy"}
        crit = sel >= 0
        assert np.array_equal(cands[crit, sel[crit]], action[crit])
        assert np.all(prop[~crit] == 1.0)
        assert {t["approval_status"][i] for i in np.flatnonzero(~crit)} == {"none"}
        for i in np.flatnonzero(crit):
            entry = by_frame[(ep, i)]
            assert entry["is_critical"] and entry["epsilon"] == 0.3
            assert entry["approval_status"] == t["approval_status"][i]
            assert entry["num_candidate_actions"] == 4
            assert entry["candidate_propensities"][sel[i]] == pytest.approx(prop[i], rel=1e-6)
        for i in np.flatnonzero(~crit):
            assert by_frame[(ep, i)]["approval_status"] is None  # the seed's null in the log
    assert statuses == {"approved", "rejected", "none"}
    meta = json.loads((out / "meta/collect.json").read_text())
    assert meta["collection_id"] == result.collection_id and meta["candidate_count"] == 4
    # each episode's outcome, as the simulator saw it
    assert ds.outcomes == {e["episode_index"]: e["success"] for e in result.episodes}


def test_log_is_append_only_and_survives_kill_9(tmp_path):
    code = (
        "import sys; from pipelines.selection.propensity import PropensityLog\n"
        "log = PropensityLog(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    log.append({'episode_index': 0, 'frame_index': i, 'pad': 'x' * (i % 300)}); i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    path = tmp_path / LOG_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 20000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = path.read_bytes()
    assert len(data) >= 20000 and data.endswith(b"\n")
    lines = data.splitlines()
    assert [json.loads(x)["frame_index"] for x in lines] == list(range(len(lines)))
    with PropensityLog(tmp_path) as log:  # a rerun appends after the last complete line
        log.append({"episode_index": 1, "frame_index": 0})
    assert path.read_bytes().startswith(data)
    # a torn last line (power loss) is refused, never rewritten
    with open(path, "ab") as f:
        f.write(b'{"episode_index": 2, "fra')
    with pytest.raises(DatasetError, match=rf"{LOG_NAME}:{len(lines) + 2}: partial last line"):
        PropensityLog(tmp_path)


def good_entry(**kw):
    entry = {f: 0 for f in LOG_FIELDS}
    entry.update(
        is_critical=True,
        approval_status="approved",
        action_propensity=0.25,
        selector_mode="random",
        epsilon=None,
        resampled=False,
        num_candidate_actions=4,
        candidate_propensities=[0.25] * 4,
    )
    entry.update(kw)
    return json.dumps(entry)


@pytest.mark.parametrize(
    "line, msg",
    [
        ("{not json", "corrupt log line"),
        (good_entry(action_propensity=0.0), r"action_propensity 0\.0 is not in \(0, 1\]"),
        (good_entry(action_propensity=1.5), r"action_propensity 1\.5 is not in \(0, 1\]"),
        (good_entry(approval_status="none"), "approval_status 'none'"),
        (good_entry(candidate_propensities=[0.5, 0.5]), "2 candidate propensities for num"),
        (good_entry(selector_mode="greedy"), "unknown selector mode 'greedy'"),
        ('{"episode_index": 0}', "corrupt log line \\(no 'state_id'\\)"),
    ],
)
def test_bad_log_lines_name_file_and_line(tmp_path, line, msg):
    path = tmp_path / LOG_NAME
    path.write_text(good_entry() + "\n" + line + "\n")
    with pytest.raises(DatasetError, match=rf"{LOG_NAME}:2: {msg}"):
        read_log(path)


def test_propensities_and_candidate_counts_are_checked(tmp_path):
    idx = np.arange(2)
    with pytest.raises(DatasetError, match=r"ep\.parquet: frame 1: action_propensity 0\.0"):
        validate_propensities("ep.parquet", np.array([1.0, 0.0]), idx, idx * 0, None, None, None)
    log = {(0, 0): {"num_candidate_actions": 3, "action_propensity": 0.5, "_line": 7}}
    with pytest.raises(DatasetError, match=rf"{LOG_NAME}:7: num_candidate_actions 3 but"):
        validate_propensities(
            "ep.parquet",
            np.array([0.5]),
            idx[:1],
            idx[:1],
            4,
            np.array([1]),
            log,
        )


REAL = ["--robot", "real", "--follower-port", "/dev/x", "--follower-id", "f"]
REAL += ["--camera", "front=0", "--camera", "wrist=2"]


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--selector", "greedy"], "--selector: unknown selector mode 'greedy'"),
        (["--selector", "learned"], "--selector learned: needs --scorer"),
        (["--critical", "every:0"], "--critical 'every:0': every:K needs"),
        (["--responders", "expert,pilot"], "'pilot': neither a controller"),
        (["--approver", "keyboard"], "--approver keyboard: only on a real arm"),
        (["--epsilon", "2"], "--epsilon 2.0: between 0 and 1"),
        (["--robot", "arm"], "--robot 'arm': one of sim, emulated, real"),
        (["--robot", "real"], "--robot real: needs --follower-port"),
        (["--robot", "real", "--follower-port", "/dev/x"], "--robot real: needs --follower-id"),
        (REAL[:6] + ["--camera", "front=0"], "--robot real: needs its two cameras"),
        (REAL[:6] + ["--camera", "front"], "--camera 'front': expected NAME=SOURCE"),
        (REAL, "--critical 'grasp+every:10': the grasp region needs the cube's position"),
        (["--robot", "emulated", "--follower-port", "/dev/x"], "--follower-port: only with"),
        (["--camera", "front=0"], "--camera: only with --robot real"),
        (["--robot", "emulated", "--max-steps", "0"], "--max-steps 0: at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, msg):
    out = tmp_path / "ds"
    assert collect.main([str(out), "--episodes", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"flywheel collect: error: {msg}") and "\n" not in err, err
    assert not out.exists()


def test_a_real_arm_needs_its_calibration_policies_and_a_person(tmp_path, capsys):
    from actors.emulated_robot import EMULATED_CALIBRATION
    from actors.feetech.calibration import save_calibration

    real = [*REAL, "--critical", "every:5", "--calibration-dir", str(tmp_path)]
    out = tmp_path / "ds"
    cases = [
        ([], "f.json: no calibration for arm 'f'"),
        (["--driver", str(tmp_path)], "'expert': a scripted controller reads the simulator"),
        (["--driver", str(tmp_path), "--responders", str(tmp_path)], "a real arm's task progress"),
        (
            ["--driver", str(tmp_path), "--responders", str(tmp_path), "--approver", "keyboard"],
            "--robot real: cannot open /dev/x",
        ),
    ]
    for i, (argv, msg) in enumerate(cases):
        if i == 1:
            save_calibration(EMULATED_CALIBRATION, "f", tmp_path)
        assert collect.main([str(out), "--episodes", "1", *real, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "flywheel collect: error: " in err and msg in err and "\n" not in err, err
        assert not out.exists()


def test_emulated_arm_collection_with_api_admin_and_undo(ray_cluster, tmp_path):
    """`--robot emulated`: the FollowerArm driver on the servo emulators, the admin through the
    API (reject each state's first attempt), undo by return_to_pose."""
    from actors.collection.episode import APIAdmin

    out = tmp_path / "ds"
    cfg = small(
        out,
        robot="emulated",
        max_steps=8,
        critical="every:4",
        responders="expert,failing",
        selector="epsilon_greedy",
        scorer="expert",
        epsilon=0.3,
    )
    result = driver.run(cfg, admin=APIAdmin(lambda attempt: len(attempt.already_executed) > 0))
    ds = LeRobotDataset(out)
    assert ds.features["candidate_actions"]["shape"] == [2, 6]
    plan = driver.plan_collection(cfg)[0]
    sim_cfg = small(tmp_path / "sim", robot="sim", max_steps=3, responders="expert,failing")
    _, sim_table = collect_episode(plan, sim_cfg, str(tmp_path / "sim"), "sim")
    columns = pq.read_schema(out / "data/chunk-000/episode_000000.parquet").names
    assert set(columns) == {*sim_table.column_names, "index"}  # the writer adds index
    by_frame = dataset_log(out)
    assert len(by_frame) == result.frames == result.log_lines
    undone = 0
    for ep in range(2):
        path, t = episode_columns(out, ep)
        state = np.array(t["observation.state"], np.float32)
        action = np.array(t["action"], np.float32)
        sel = np.array(t["selected_candidate"])
        validate_propensities(
            path,
            np.array(t["action_propensity"], np.float32),
            np.array(t["frame_index"]),
            np.array(t["episode_index"]),
            2,
            sel,
            by_frame,
        )
        status = t["approval_status"]
        for i in np.flatnonzero(np.array(status) == "rejected"):
            assert status[i + 1] == "approved"  # the other candidate, drawn after the undo
            assert by_frame[(ep, i + 1)]["action_propensity"] == 1.0  # 1 / (n - k)
            assert by_frame[(ep, i + 1)]["state_id"] == by_frame[(ep, i)]["state_id"]
            if np.abs(action[i, :5] - state[i, :5]).max() > 2.0:  # the attempt moved the arm
                assert np.abs(state[i + 1] - state[i]).max() <= 1.0  # and the undo brought it back
                undone += 1
    assert undone >= 1
    assert result.episodes[0]["rejections"] == result.episodes[0]["critical_states"] == 2
    # the emulated arm's coupled simulator says whether an episode succeeded
    assert ds.outcomes == {e["episode_index"]: e["success"] for e in result.episodes}
    assert None not in ds.outcomes.values()


def test_a_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "x").write_text("mine")
    assert collect.main([str(tmp_path), "--episodes", "1"]) == 2
    assert "neither empty nor an interrupted collect" in capsys.readouterr().err
    assert (tmp_path / "x").read_text() == "mine"


# --------------------------------------------------------------- propensity-weighted training


def test_importance_weights_are_the_clipped_ratio_over_the_candidates():
    import torch

    from pipelines.policy.weighting import candidate_softmax, importance_weights

    cands = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]] * 3)
    action = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    pi = candidate_softmax(action, cands, scale=5.0)
    expected0 = torch.softmax(-torch.tensor([0.0, 5.0, 10.0]) / 5.0, 0)
    assert torch.allclose(pi[0], expected0) and torch.allclose(pi.sum(1), torch.ones(3))
    selected = torch.tensor([0, 1, -1])
    propensity = torch.tensor([0.02, 0.5, 1.0])
    w, clipped = importance_weights(pi, selected, propensity, max_weight=10.0)
    assert w[0] == 10.0 and clipped.tolist() == [True, False, False]  # 0.665 / 0.02 > 10
    assert w[1] == pytest.approx(float(pi[1, 1] / 0.5))
    assert w[2] == 1.0  # a plain frame: one candidate, propensity 1


def copy_dataset(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def rewrite_episode(root, episode, fn):
    from pipelines.dataset import write_parquet

    path = root / f"data/chunk-000/episode_{episode:06d}.parquet"
    write_parquet(path, fn(pq.read_table(path)))
    return path


def test_bad_propensity_data_is_refused_by_train_policy(collected, tmp_path, capsys):
    import pyarrow as pa

    from pipelines import train_policy

    out, _ = collected
    base = ["--conditioning", "none", "--importance-weights", "--no-mlflow", "--steps", "1"]

    def error(root, *extra):
        code = train_policy.main([str(root), *base, *extra, "--storage", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err, err
        assert not (tmp_path / "r").exists()
        return err

    no_prop = copy_dataset(out, tmp_path / "no_prop")
    rewrite_episode(no_prop, 1, lambda t: t.drop(["action_propensity"]))
    msg = "episode_000001.parquet: no column 'action_propensity': --importance-weights needs"
    assert msg in error(no_prop)

    zero = copy_dataset(out, tmp_path / "zero")

    def zero_propensity(t):
        values = t.column("action_propensity").to_numpy().copy()
        values[4] = 0.0
        i = t.column_names.index("action_propensity")
        return t.set_column(i, "action_propensity", pa.array(values, pa.float32()))

    rewrite_episode(zero, 0, zero_propensity)
    assert "episode_000000.parquet: frame 4: action_propensity 0.0 is not in (0, 1]" in error(zero)

    miscount = copy_dataset(out, tmp_path / "miscount")
    log = (miscount / LOG_NAME).read_text().splitlines()
    for i, line in enumerate(log):
        entry = json.loads(line)
        if entry["is_critical"] and entry["collection_id"] != "killed":
            entry["num_candidate_actions"] = 3
            entry["candidate_propensities"] = entry["candidate_propensities"][:3]
            log[i] = json.dumps(entry)
            break
    (miscount / LOG_NAME).write_text("\n".join(log) + "\n")
    assert f"{LOG_NAME}:{i + 1}: num_candidate_actions 3 but" in error(miscount)

    corrupt = copy_dataset(out, tmp_path / "corrupt")
    with open(corrupt / LOG_NAME, "a") as f:
        f.write("{oops\n")
    assert f"{LOG_NAME}:{len(log) + 1}: corrupt log line" in error(corrupt)


def test_rejected_frames_are_left_out_of_training(collected):
    from pipelines.policy.data import load_episode

    out, _ = collected
    ds = LeRobotDataset(out)
    t = pq.read_table(out / "data/chunk-000/episode_000000.parquet").to_pydict()
    status = np.array(t["approval_status"], dtype=object)
    assert (status == "rejected").any()
    ep = load_episode(ds, 0, ds.camera_keys, 16, selection=True)
    kept = status != "rejected"
    assert len(ep["state"]) == kept.sum()  # approved and none stay, rejected go
    assert np.array_equal(ep["action"], np.array(t["action"], np.float32)[kept])
    assert np.array_equal(ep["selected"], np.array(t["selected_candidate"])[kept])
    assert ep["candidates"].shape == (kept.sum(), 4, 6)


def test_train_policy_with_importance_weights_logs_them(collected, tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from pipelines.policy import training as train
    from pipelines.policy.config import PolicyTrainConfig

    out, _ = collected
    cfg = PolicyTrainConfig.from_flags(
        dataset=str(out), conditioning="none", importance_weights=True, self_normalize=True,
        curriculum="propensity", workers=1, batch_size=8, image_size=16, steps=2,
        checkpoint_every=1, storage=str(tmp_path / "runs"), name="iw",
    )  # fmt: skip
    result = train.run(cfg)
    assert result.step == 2
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("flywheel-train-policy").experiment_id]
    )
    names = {"importance_weight_mean", "importance_weight_clipped", "importance_weight_ess"}
    assert any(names <= set(r.data.metrics) for r in runs)
    assert runs[0].data.params["importance_weights"] == "True"


def test_propensity_report_counts_critical_attempts_only(collected, tmp_path, capsys):
    from pipelines import propensity_report

    out, result = collected
    report_dir = tmp_path / "report"
    assert propensity_report.main([str(out), "--out", str(report_dir), "--low", "0.3"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    critical = [e for e in dataset_log(out).values() if e["is_critical"]]
    rejected = sum(e["approval_status"] == "rejected" for e in critical)
    mode = report["rejection_by_selector_mode"]["epsilon_greedy"]
    assert mode["attempts"] == len(critical) and mode["rejected"] == rejected == sum(
        e["rejections"] for e in result.episodes
    )
    assert sum(v["attempts"] for v in report["rejection_by_responder"].values()) == len(critical)
    assert set(report["rejection_by_responder"]) <= {"expert", "hesitant", "noisy", "failing"}
    low = report["low_propensity_approved"]
    assert low["approved"] == sum(
        e["action_propensity"] < 0.3 and e["approval_status"] == "approved" for e in critical
    )
    assert sum(report["propensity_histogram"]["counts"]) == len(critical)
    for name in propensity_report.PLOTS:
        assert (report_dir / name).read_bytes().startswith(b"\x89PNG")
    assert propensity_report.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "meta/info.json: missing" in err and "\n" not in err


def test_train_selector_then_collect_with_it(collected, tmp_path):
    from pipelines.selection import training as train_selector
    from pipelines.selection.config import SelectorTrainConfig

    out, _ = collected
    cfg = SelectorTrainConfig.from_flags(
        dataset=str(out), mlflow=False, steps=4, batch_size=8, checkpoint_every=2, holdout=0.5,
        storage=str(tmp_path / "runs"),
    )  # fmt: skip
    result = train_selector.run(cfg)
    assert result.step == 4 and "heldout_accuracy" in result.metrics
    learned = tmp_path / "learned"
    res = driver.run(
        small(learned, episodes=1, selector="learned", scorer=str(tmp_path / "runs/selector"))
    )
    log = dataset_log(learned)
    crit = [e for e in log.values() if e["is_critical"]]
    assert crit and res.frames == len(log)
    for e in crit:
        z = np.array(e["candidate_scores"]) / 1.0
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        if not e["resampled"]:
            assert e["action_propensity"] == pytest.approx(p[e["selected_candidate"]])


def test_off_policy_estimate_weights_by_the_learned_softmax():
    from pipelines.selection.propensity import first_draw_approval, off_policy_approval

    def entry(sel, approved, prop, scores):
        return {"is_critical": True, "resampled": False, "selected_candidate": sel,
                "approval_status": "approved" if approved else "rejected",
                "action_propensity": prop, "candidate_scores": scores}  # fmt: skip

    # scores make the learned softmax pick candidate 0 with 0.9 (log(9) apart)
    s = [float(np.log(9.0)), 0.0]
    entries = [entry(0, True, 0.5, s), entry(1, False, 0.5, s)]
    est = off_policy_approval(entries, temperature=1.0)
    assert est["unweighted"] == 0.5 == first_draw_approval(entries)
    assert est["ips"] == pytest.approx(0.9 / 0.5 * 0.5)  # mean(w r) = (1.8 + 0) / 2
    assert est["self_normalized"] == pytest.approx(0.9)
