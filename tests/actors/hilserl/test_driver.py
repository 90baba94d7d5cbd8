"""`flywheel hilserl` on Ray: the whole run, resume, bad input, a killed collector, a killed
learner, and the emulated SO-101 through its driver."""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from actors.hilserl import checks
from actors.hilserl.collector import collector_actor
from actors.hilserl.config import CollectorConfig, EpisodeSpec, HilserlLearnerConfig
from actors.hilserl.learner import learner_actor
from pipelines import hilserl
from pipelines.dataset import EpisodeRecorder, LeRobotDataset
from pipelines.rl.features import load_frozen_encoder
from tests.helpers import wait_until

CAMS = ["observation.images.front", "observation.images.wrist"]
pytestmark = pytest.mark.usefixtures("ray_cluster")


def eventually(predicate):
    """`predicate`'s value once it holds (10 minutes at most: a liveness bound)."""
    value = wait_until(predicate, timeout=600.0, poll=0.2)
    assert value, "condition not met in time"
    return value


def small(tmp_path, encoder_path, **kw):
    base = dict(
        encoder=f"frozen:{encoder_path}",
        steps=160,
        hidden_dim=32,
        batch_size=16,
        learning_starts=20,
        random_steps=40,
        updates_per_step=0.5,
        checkpoint_every=60,
        push_every=10,
        storage=str(tmp_path / "runs"),
        name="t",
        quiet=True,
    )
    return hilserl.HilserlConfig.from_flags(**{**base, **kw})


def test_a_run_learns_records_logs_and_resumes(tmp_path, encoder_path, mlflow_uri):
    result = hilserl.run(small(tmp_path, encoder_path, collectors=2))
    s = result.status
    assert s["env_steps"] >= 160 and s["episodes"] >= 2 and not s["error"]
    assert s["learner_steps"] == math.ceil(0.5 * (s["env_steps"] - 20))  # --updates-per-step
    assert s["online_transitions"] == s["env_steps"] and s["offline_transitions"] > 0
    assert {e["collector"] for e in result.history["episodes"]} <= {0, 1}  # both: next test
    meta = json.loads(
        (
            tmp_path / "runs" / "t" / result.checkpoint.rsplit("/", 1)[-1] / "hilserl.json"
        ).read_text()
    )
    assert meta["env_steps"] == s["env_steps"] and meta["run"]["env"]["action_mode"] == "ee_delta"
    # the online episodes as a LeRobot dataset, interventions flagged
    ds = LeRobotDataset(result.dataset)
    assert ds.info["total_episodes"] == s["episodes"] and ds.info["total_frames"] == s["env_steps"]
    assert ds.features["action"]["names"] == ["dx", "dy", "dz", "gripper"]
    frames = [ds.read_episode(e) for e in ds.episode_indices]
    interv = np.concatenate([f["complementary_info.is_intervention"].to_numpy() for f in frames])
    kinds = {v for f in frames for v in f["data_type"].to_pylist()}
    assert interv.any() and kinds <= {"auto", "intervention"} and "intervention" in kinds
    assert (tmp_path / "runs" / "t" / "learning_curves.png").stat().st_size > 10_000
    assert result.mlflow_run and "MLflow run" in result.mlflow_run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("flywheel-hilserl").experiment_id])[0]
    logged = set(run.data.metrics)
    assert {"success_rate", "intervention_rate", "return", "critic_loss", "bc_loss"} <= logged
    assert {"q_mean", "q_max", "target_q_max", "q_bound", "q_alarms"} <= logged
    assert "learning_curves.png" in {a.path for a in client.list_artifacts(run.info.run_id)}

    # the same command with more steps resumes: buffers, weights, optimizer, counters (the
    # run may have more than its 160: the episodes the collectors were in when it had them)
    more = s["env_steps"] + 60
    again = hilserl.run(small(tmp_path, encoder_path, collectors=2, steps=more))
    assert again.resumed_from["env_steps"] == s["env_steps"]
    assert again.resumed_from["online"] == s["online_transitions"]
    assert again.status["env_steps"] >= more
    assert again.status["episodes"] == LeRobotDataset(result.dataset).info["total_episodes"]

    # the same name with another configuration: one line, nothing touched
    before = sorted(p.name for p in (tmp_path / "runs" / "t").iterdir())
    code = hilserl.main(
        [
            "--encoder",
            f"frozen:{encoder_path}",
            "--bc-weight",
            "0",
            "--storage",
            str(tmp_path / "runs"),
            "--name",
            "t",
            "--hidden-dim",
            "32",
            "--batch-size",
            "16",
            "--no-mlflow",
        ]  # fmt: skip
    )
    assert code == 2
    assert sorted(p.name for p in (tmp_path / "runs" / "t").iterdir()) == before


def recorded(tmp_path, cameras, joints=6, action=6):
    root = tmp_path / "ds"
    rec = EpisodeRecorder(root, fps=10, task="t", joint_names=[f"j{i}" for i in range(joints)],
                          cameras={k: (32, 32) for k in cameras},
                          action_names=[f"a{i}" for i in range(action)])  # fmt: skip
    rec.begin()
    for _ in range(3):
        img = np.zeros((32, 32, 3), np.uint8)
        rec.add(np.zeros(joints), np.zeros(action), {k: img for k in cameras})
    rec.save(success=False)
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["--online-ratio", "1.5"], "--online-ratio 1.5: a share between 0 and 1"),
        (["--encoder", "frozen:/nope"], "no such checkpoint"),
        (["--reward", "classifier", "--reward-url", "http://127.0.0.1:9/reward"], "unreachable"),
        (["--collectors", "0"], "--collectors 0: at least 1"),
        (["--robot", "moon"], "--robot 'moon'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, encoder_path, capsys, args, message):
    base = [
        "--encoder",
        f"frozen:{encoder_path}",
        "--storage",
        str(tmp_path / "runs"),
        "--no-mlflow",
    ]
    code = hilserl.main([*base, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "cameras, action, message",
    [
        (["observation.images.top"], 6, "no camera 'observation.images.front'"),
        (CAMS, 5, "action has 5 dimensions"),
    ],
)
def test_an_offline_dataset_that_does_not_fit_is_refused(
    tmp_path, encoder_path, capsys, cameras, action, message
):
    ds = recorded(tmp_path, cameras, action=action)
    code = hilserl.main(
        [
            "--encoder",
            f"frozen:{encoder_path}",
            "--offline-dataset",
            str(ds),
            "--storage",
            str(tmp_path / "runs"),
            "--no-mlflow",
        ]  # fmt: skip
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "info.json" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_the_offline_buffer_is_seeded_from_synth_demos(tmp_path, encoder_path):
    from pipelines.synth import SynthConfig
    from pipelines.synth import run as synth

    synth(
        SynthConfig(str(tmp_path / "demos"), episodes=3, image_size=32, mix="expert=1"),
        out=lambda *a: None,
    )
    result = hilserl.run(
        small(
            tmp_path,
            encoder_path,
            offline_dataset=str(tmp_path / "demos"),
            steps=60,
            record=False,
            bc_on="interventions+demos",
            mlflow=False,
        )  # fmt: skip
    )
    ds = LeRobotDataset(tmp_path / "demos")
    frames = sum(ds.episodes[e]["length"] for e in ds.episode_indices)
    assert result.status["offline_loaded"] == frames  # successes keep every transition
    assert result.status["offline_transitions"] >= frames


def _learner(encoder_path, run_dir, **kw):
    """A learner actor of a small run in `run_dir / "run"`, and its agent's config."""
    cfg = small(run_dir, encoder_path)
    res = checks.resolve(cfg, gpu=False)
    learner_cfg = HilserlLearnerConfig(
        batch_size=16, learning_starts=20, random_steps=20, updates_per_step=0.5, push_every=10,
        **kw,
    )  # fmt: skip
    source = str(load_frozen_encoder(encoder_path).source)
    agent = checks.agent_config(cfg, res)
    learner = learner_actor(num_cpus=0).remote(
        learner_cfg, agent, checks.obs_spec(res), str(run_dir / "run"),
        checks.run_settings(cfg, res), "cpu", source,
    )  # fmt: skip
    return learner, agent


def _collector(index, learner, agent):
    spec = EpisodeSpec(CAMS, image_size=32, keep_images=False)
    return collector_actor(num_cpus=0).remote(
        index, learner, CollectorConfig(), spec, agent, None, None, 0
    )


def test_a_killed_collector_comes_back_and_a_silent_one_is_reported(tmp_path, encoder_path):
    import ray

    learner, agent = _learner(encoder_path, tmp_path, steps=100_000, silent_after_s=15)
    collectors = [_collector(i, learner, agent) for i in range(2)]
    runs = [c.run.remote() for c in collectors]
    warnings = []

    def episodes_from(index, after=0.0):
        history = ray.get(learner.history.remote())["episodes"]
        return [e for e in history if e["collector"] == index and e["wall_s"] > after]

    try:
        eventually(lambda: episodes_from(0) and episodes_from(1))  # two feed one learner
        pid = ray.get(collectors[0].pid.remote())
        os.kill(pid, signal.SIGKILL)
        # Ray restarts it (the call waits for the new process), retries its loop; it sends
        # again from the new process
        assert ray.get(collectors[0].pid.remote(), timeout=600) != pid
        status = ray.get(learner.status.remote())
        warnings.extend(status["warnings"])  # status() hands each warning out once
        eventually(lambda: episodes_from(0, after=status["wall_s"]))
        # collector 1 gone for good: the learner says so and carries on with collector 0
        ray.kill(collectors[1], no_restart=True)

        def reported():  # once silent, a dead collector stays so (a slow one may come back)
            status = ray.get(learner.status.remote())
            warnings.extend(status["warnings"])
            return 1 in status["silent"] and status

        status = eventually(reported)
        assert status["silent_collectors"] >= 1
        assert any("collector 1 sent nothing" in w for w in warnings)
        steps = status["env_steps"]
        eventually(lambda: ray.get(learner.status.remote())["env_steps"] > steps)
    finally:
        for actor in [*collectors, learner]:
            ray.kill(actor, no_restart=True)
    del runs


def test_a_killed_learner_resumes_from_its_checkpoint(tmp_path, encoder_path):
    import ray

    learner, agent = _learner(encoder_path, tmp_path, steps=240, checkpoint_every=50)
    collector = _collector(0, learner, agent)
    run = collector.run.remote()
    run_dir = tmp_path / "run"
    try:
        eventually(lambda: list(run_dir.glob("checkpoint_*")))
        before = ray.get(learner.status.remote())
        os.kill(ray.get(learner.pid.remote()), signal.SIGKILL)
        resumed = eventually(lambda: ray.get(learner.resumed.remote()))
        assert 50 <= resumed["env_steps"] <= before["env_steps"] + 250
        assert resumed["online"] == resumed["env_steps"] and resumed["learner_steps"] > 0
        eventually(lambda: ray.get(learner.wait.remote(1.0)))
        assert ray.get(run) >= 1  # the collector carried on to the end
        final = ray.get(learner.finish.remote())
        meta = json.loads((run_dir / final.rsplit("/", 1)[-1] / "hilserl.json").read_text())
        assert meta["env_steps"] >= 240
    finally:
        for actor in (collector, learner):
            ray.kill(actor, no_restart=True)


def test_the_emulated_so101_through_its_driver(tmp_path, encoder_path):
    result = hilserl.run(small(tmp_path, encoder_path, robot="emulated", steps=50, mlflow=False))
    s = result.status
    assert s["env_steps"] >= 50 and not s["error"]
    ds = LeRobotDataset(result.dataset)
    frames = [ds.read_episode(e) for e in ds.episode_indices]
    interv = np.concatenate([f["complementary_info.is_intervention"].to_numpy() for f in frames])
    assert interv.any()  # the simulated operator took the leader arm over
    assert (s["intervention_rate"] > 0) and s["episodes"] == ds.info["total_episodes"]


def test_the_served_classifier_decides_rewards_and_ends_through_its_handle(tmp_path, encoder_path):
    """A classifier that calls every frame a success, served on Ray Serve: each episode is one
    step with reward 1 (the simulator alone never ends one that soon)."""
    import socket

    from ray import serve

    from pipelines.classifier.model import ClassifierConfig, RewardClassifier, save_model
    from serving import RewardAppConfig, ServeConfig, serve_reward

    torch.manual_seed(0)
    model = RewardClassifier(
        ClassifierConfig(cameras=CAMS[:1], image_size=32, camera_dim=16, hidden_dim=16)
    )
    with torch.no_grad():
        model.head[-1].bias.fill_(50.0)  # success, whatever the frame
    checkpoint = save_model(tmp_path / "clf", model, name="always")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = "hilserl-reward"
    serve_reward(
        ServeConfig(RewardAppConfig(checkpoint, num_cpus=0, threads=1), port=port, name=app)
    )
    try:
        cfg = small(tmp_path, encoder_path, reward="classifier", reward_app=app, steps=30)
        cfg.mlflow = cfg.record = False
        result = hilserl.run(cfg)
        info = serve.get_app_handle(app).info.remote().result(timeout_s=120)
    finally:
        serve.shutdown()
    s = result.status
    assert s["env_steps"] >= 30 and not s["error"]
    episodes = result.history["episodes"]
    assert len(episodes) == s["episodes"] >= 30
    assert {(e["length"], e["return"]) for e in episodes} == {(1, 1.0)}
    scored = sum(int(size) * n for size, n in info["batch_sizes"].items())
    assert scored >= s["env_steps"]  # every step's frame was scored by the endpoint
