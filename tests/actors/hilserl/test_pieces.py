"""HIL-SERL's online pieces without Ray: the action wrapper, rollouts with the operator, the
learner's buffers, checkpoints and resume, frozen encoders, the saved policy."""

import json
import os

import numpy as np
import pytest
import torch

from actors.hilserl.checkpoints import KEEP_CHECKPOINTS
from actors.hilserl.config import CollectorConfig, EpisodeSpec, HilserlLearnerConfig
from actors.hilserl.learner import HilserlLearner
from actors.hilserl.recording import OnlineRecorder
from actors.hilserl.reward import SuccessStreak
from actors.hilserl.sim_rollout import SimRollout
from pipelines.dataset import DatasetError
from pipelines.rl.agent import AgentPolicy
from pipelines.rl.config import AgentConfig
from pipelines.rl.features import frozen_from_export, load_frozen_encoder
from pipelines.rl.policy import evaluate_actor, load_policy
from pipelines.rl.replay import intervention_runs
from pipelines.runtime.checkpoints import write_checkpoint
from pipelines.simulator import SO101Env
from pipelines.simulator import kinematics as kin
from pipelines.simulator.controllers import ExpertController
from pipelines.simulator.wrappers import (
    NormalizedEEDelta,
    denormalize_ee_action,
    ee_delta_from_joint_targets,
    normalize_ee_action,
)

CAMS = ["observation.images.front", "observation.images.wrist"]
SAVED_RUN = {  # the run settings eval-policy reads from a checkpoint
    "env": {"task": "reach_grasp", "image_size": 32, "fps": 10, "action_mode": "ee_delta"},
    "max_ee_step": 0.02,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def features_rollout(encoder):
    """A simulator rollout keeping the frozen encoder's features only, at 32 x 32."""
    spec = EpisodeSpec(CAMS, image_size=32, keep_images=False)
    return SimRollout(CollectorConfig(), spec, encoder)


def estimator_checkpoint(path, image_size=32):
    """A (randomly initialised) estimator checkpoint: a valid frozen encoder."""
    from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig

    cfg = EstimatorConfig(variant="pi06", cameras=CAMS, image_size=image_size)
    torch.manual_seed(0)
    path.mkdir(parents=True)
    model = AdvantageEstimator(cfg)
    write_checkpoint(
        path, "estimator", {"model": model.state_dict()}, {"step": 1, "model": cfg.to_dict()}
    )
    return path


def agent_config(encoder, **kw):
    base = dict(
        cameras=encoder.cameras,
        encoder="frozen",
        frozen_dim=encoder.feature_dim,
        hidden_dim=32,
        state_low=list(kin.JOINT_LIMITS_LOW),
        state_high=list(kin.JOINT_LIMITS_HIGH),
    )
    return AgentConfig(**{**base, **kw})


def test_normalized_actions_round_trip_and_scale_to_the_workspace_step():
    raw = np.array([0.01, -0.02, 0.005, 25.0], np.float32)
    a = normalize_ee_action(raw, 0.02)
    assert np.allclose(a, [0.5, -1.0, 0.25, -0.5])
    assert np.allclose(denormalize_ee_action(a, 0.02), raw, atol=1e-6)
    assert np.allclose(normalize_ee_action(np.array([1.0, 0, 0, 300.0]), 0.02), [1, 0, 0, 1])
    env = NormalizedEEDelta(SO101Env(action_mode="ee_delta", render_images=False))
    assert env.action_space.low.tolist() == [-1] * 4 and env.action_space.high.tolist() == [1] * 4
    with pytest.raises(ValueError, match="ee_delta"):
        NormalizedEEDelta(SO101Env(render_images=False))


def test_joint_target_demos_become_ee_deltas_that_replay_to_success():
    env = SO101Env(action_mode="joint", render_images=False)
    obs, info = env.reset(seed=5)
    expert = ExpertController(env, seed=5)
    states, targets, done = [], [], False
    while not done:
        action = expert(obs, info)
        states.append(obs["observation.state"])
        targets.append(env.joint_targets(action))
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    assert info["success"]
    deltas = ee_delta_from_joint_targets(np.array(states), np.array(targets))
    assert np.abs(deltas[:, :3]).max() <= 0.02 + 1e-9
    ee = SO101Env(action_mode="ee_delta", render_images=False)
    ee.reset(seed=5)
    for d in deltas:
        _, _, terminated, truncated, info = ee.step(d)
        if terminated or truncated:
            break
    assert info["success"]


def test_a_supervised_rollout_flags_interventions_and_stores_the_operators_actions(tmp_path):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    rollout = SimRollout(CollectorConfig(), EpisodeSpec(CAMS, image_size=32), encoder)
    # a policy that drives straight up and away: the operator takes over and succeeds
    episode = rollout.episode(lambda obs: np.array([0.0, 0.0, 1.0, -1.0], np.float32), seed=3)
    t = len(episode)
    assert episode.info["success"] and episode.terminated and episode.reward[-1] == 1.0
    assert episode.obs["features"].shape == (t + 1, encoder.feature_dim)
    assert episode.obs["features"].dtype == np.float16
    assert episode.obs[CAMS[0]].shape == (t + 1, 32, 32, 3)
    interv = episode.intervention
    assert 0 < interv.sum() < t and not interv[0]
    # the policy's steps keep its action; the operator's are the expert's, normalized
    assert np.allclose(episode.action[~interv], [0.0, 0.0, 1.0, -1.0])
    assert np.abs(episode.action[interv][:, :3]).max() <= 0.25 + 1e-6  # the expert's 5 mm/step
    runs = intervention_runs(episode)
    assert sum(len(r) for r in runs) == interv.sum()
    assert runs[-1].terminated and all(r.intervention.all() for r in runs)


def test_classifier_reward_decides_reward_and_end(tmp_path):
    spec = EpisodeSpec(CAMS, image_size=32, keep_images=False, max_episode_steps=30)
    calls = []

    def never(obs):
        calls.append(1)
        return 0.0

    rollout = SimRollout(CollectorConfig(), spec, None, reward=never)
    episode = rollout.episode(lambda obs: np.zeros(4, np.float32), seed=1)
    assert len(episode) == 30 and not episode.terminated and episode.reward.sum() == 0
    assert len(calls) == 30


def test_a_classifier_success_counts_after_its_consecutive_frames():
    streak = SuccessStreak(3)
    said = [True, True, False, True, True, True, True]
    assert [streak.update(s) for s in said] == [False, False, False, False, False, True, True]
    streak.reset()
    assert streak.update(True) is False
    assert [SuccessStreak(1).update(s) for s in (True, False)] == [True, False]


def make_learner(tmp_path, encoder, **kw):
    run_meta = kw.pop("run_meta", {})
    cfg = HilserlLearnerConfig(
        steps=kw.pop("steps", 10_000),
        batch_size=16,
        learning_starts=20,
        checkpoint_every=10**9,
        online_capacity=400,
        offline_capacity=400,
        random_steps=0,
        **kw,
    )
    spec = {"observation.state": ((6,), "float32"), "features": ((encoder.feature_dim,), "float16")}
    return HilserlLearner(
        cfg,
        agent_config(encoder),
        spec,
        str(tmp_path / "run"),
        run_meta,
        encoder_source=encoder.source,
        start=False,
    )


def test_learner_checkpoint_and_resume_restore_buffers_weights_optimizer_and_step(tmp_path):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    rollout = SimRollout(
        CollectorConfig(), EpisodeSpec(CAMS, image_size=32, keep_images=False), encoder
    )
    learner = make_learner(tmp_path, encoder)
    rng = np.random.default_rng(0)
    for seed in range(3):
        ep = rollout.episode(lambda obs: rng.uniform(-1, 1, 4).astype(np.float32), seed)
        ep.info["collector"] = 0
        learner.add_episode([ep])
    while learner._ready():
        learner.step()
    assert learner.agent.updates == learner.env_steps - 20
    path = learner.checkpoint()
    meta = json.loads((tmp_path / "run" / path.rsplit("/", 1)[-1] / "hilserl.json").read_text())
    assert meta["env_steps"] == learner.env_steps and meta["step"] == learner.agent.updates

    again = make_learner(tmp_path, encoder)
    assert again.resumed_from["env_steps"] == learner.env_steps
    assert again.agent.updates == learner.agent.updates
    assert again.seeds_issued == learner.seeds_issued and again.episodes == 3
    for name in ("action", "reward", "terminal", "last", "intervention"):
        assert np.array_equal(getattr(again.online, name), getattr(learner.online, name))
    assert np.array_equal(again.online.obs["features"], learner.online.obs["features"])
    assert len(again.offline) == len(learner.offline)
    for p, q in zip(
        again.agent.critic.parameters(), learner.agent.critic.parameters(), strict=True
    ):
        assert torch.equal(p, q)
    opt_a = again.agent.actor_opt.state_dict()["state"]
    opt_b = learner.agent.actor_opt.state_dict()["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_b)
    # the next steps of both are the same computation
    a, b = again.step(), learner.step()
    assert a["critic_loss"] == pytest.approx(b["critic_loss"], rel=1e-5)


def test_a_kill_mid_checkpoint_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    rollout = SimRollout(
        CollectorConfig(), EpisodeSpec(CAMS, image_size=32, keep_images=False), encoder
    )
    learner = make_learner(tmp_path, encoder)
    learner.add_episode([rollout.episode(lambda obs: np.zeros(4, np.float32), 0)])
    first = learner.checkpoint()
    learner.add_episode([rollout.episode(lambda obs: np.zeros(4, np.float32), 1)])

    def die(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C while the state is being written

    monkeypatch.setattr(torch, "save", die)
    with pytest.raises(KeyboardInterrupt):
        learner.checkpoint()
    monkeypatch.undo()
    run = tmp_path / "run"
    assert [p.name for p in run.glob("checkpoint_*")] == [first.rsplit("/", 1)[-1]]
    assert not list(run.glob(".checkpoint_*"))
    again = make_learner(tmp_path, encoder)
    assert (
        again.env_steps
        == json.loads((run / first.rsplit("/", 1)[-1] / "hilserl.json").read_text())["env_steps"]
    )


def test_pruning_deletes_only_the_learners_own_old_checkpoints(tmp_path):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    rollout = SimRollout(
        CollectorConfig(), EpisodeSpec(CAMS, image_size=32, keep_images=False), encoder
    )
    run = tmp_path / "run"
    foreign = run / "checkpoint_2026-12-01_14-50-02.281390"  # a Ray Train run's, same folder
    foreign.mkdir(parents=True)
    (foreign / "classifier.json").write_text("{}")
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    learner = make_learner(tmp_path, encoder)
    made = []
    for seed in range(3):
        learner.add_episode([rollout.episode(lambda obs: np.zeros(4, np.float32), seed)])
        made.append(learner.checkpoint().rsplit("/", 1)[-1])
    assert foreign.is_dir() and (run / "checkpoint_manager_snapshot.json").is_file()
    assert [p.name for p in learner.own_checkpoints()] == made[-KEEP_CHECKPOINTS:]
    again = make_learner(tmp_path, encoder)
    assert again.resumed_from["env_steps"] == learner.env_steps


def test_pacing_intervention_runs_go_offline_and_sync_hands_out_seeds(tmp_path):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    learner = make_learner(tmp_path, encoder, steps=100, max_lag=5)
    a, b = learner.sync(0, -5), learner.sync(1, -5)
    assert a["seed"] != b["seed"] and a["weights"] is not None and not a["stop"]
    rollout = SimRollout(
        CollectorConfig(), EpisodeSpec(CAMS, image_size=32, keep_images=False), encoder
    )
    ep = rollout.episode(lambda obs: np.array([0, 0, 1, -1], np.float32), 2)
    learner.add_episode([ep])
    assert len(learner.offline) == ep.intervention.sum() > 0
    assert learner.sync(0, learner.version)["wait"] > 0  # the learner lags: collectors wait
    while learner._ready():
        learner.step()
    answer = learner.sync(0, learner.version)
    assert answer["stop"] == (learner.env_steps >= 100)


def test_frozen_encoders_are_refused_unless_estimator_or_classifier(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="not a checkpoint"):
        load_frozen_encoder(tmp_path / "x")
    with pytest.raises(DatasetError, match="no such"):
        load_frozen_encoder(tmp_path / "missing")
    other = tmp_path / "pol"
    other.mkdir()
    write_checkpoint(other, "policy", {"model": {}}, {"step": 1})
    with pytest.raises(DatasetError, match="a policy checkpoint"):
        load_frozen_encoder(other)
    enc = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    frames = {k: np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), np.uint8) for k in CAMS}
    f = enc.features(frames)  # another size: resized
    assert f.shape == (3, 256) and np.allclose(frozen_from_export(enc.export()).features(frames), f)


def test_the_saved_actor_acts_as_a_policy(tmp_path):
    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    learner = make_learner(tmp_path, encoder, run_meta=SAVED_RUN)
    path = learner.checkpoint()
    policy, env = load_policy(path)
    assert env["action_mode"] == "ee_delta"
    obs, _ = SO101Env(image_size=32, action_mode="ee_delta").reset(seed=0)
    policy.reset()
    action = policy.act(obs)
    mean = AgentPolicy(AgentConfig(**learner.agent_config.to_dict()))
    mean.load(learner.agent.policy_state(), 0)
    assert action.shape == (4,) and np.abs(action[:3]).max() <= 0.02 and 0 <= action[3] <= 100
    report = evaluate_actor(path, episodes=2, seed=0)
    assert report["episodes"] == 2 and [o["seed"] for o in report["outcomes"]] == [0, 1]


def test_flywheel_eval_policy_evaluates_a_hilserl_checkpoint(tmp_path, capsys):
    from pipelines import eval_policy

    encoder = load_frozen_encoder(estimator_checkpoint(tmp_path / "est"))
    learner = make_learner(tmp_path, encoder, run_meta=SAVED_RUN)
    path = learner.checkpoint()
    report = tmp_path / "report.json"
    run_dir = str(tmp_path / "run")  # a run folder: its latest checkpoint
    argv = [run_dir, "--episodes", "2", "--one-process", "--no-mlflow", "--report", str(report)]
    assert eval_policy.main(argv) == 0, capsys.readouterr().err
    arm = json.loads(report.read_text())["arms"][0]
    assert arm["seeds"] == [0, 1] and arm["episodes"] == 2
    assert arm["success"] == [o["success"] for o in evaluate_actor(path, episodes=2)["outcomes"]]
    # with a cfg scale a HIL-SERL actor does not take: one line, exit 2
    assert eval_policy.main([path, "--cfg-scale", "2", "--one-process", "--no-mlflow"]) == 2
    assert "takes no --cfg-scale" in capsys.readouterr().err


def test_a_reward_classifier_checkpoint_is_a_frozen_encoder(tmp_path):
    from pipelines.classifier.model import (
        ClassifierConfig,
        RewardClassifier,
        load_feature_extractor,
        save_model,
    )

    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=32, camera_dim=16))
    path = save_model(tmp_path / "clf", model, name="t")
    enc = load_frozen_encoder(path)
    assert enc.kind == "classifier" and enc.cameras == CAMS and enc.feature_dim == 32
    frames = {k: np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3), np.uint8) for k in CAMS}
    f = enc.features(frames)
    assert f.shape == (2, 32)
    assert np.allclose(f, load_feature_extractor(path, device="cpu").features(frames), atol=1e-6)
    assert np.allclose(frozen_from_export(enc.export()).features(frames), f, atol=1e-6)


def test_hilserl_actors_raise_themselves_to_normal_priority():
    """Ray nices its workers to 15; the actors undo it for every thread where permitted."""
    import subprocess
    import sys

    from actors.priority import at_normal_priority

    code = (
        "import os, threading, time\n"
        "os.nice(10)\n"
        "t = threading.Thread(target=time.sleep, args=(2,)); t.start()\n"
        "from actors.priority import normal_priority\n"
        "ok = normal_priority()\n"
        "print(ok, sorted({os.getpriority(os.PRIO_PROCESS, int(x))"
        " for x in os.listdir('/proc/self/task')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    root = os.geteuid() == 0
    assert out.stdout.split(maxsplit=1) == (["True", "[0]\n"] if root else ["False", "[10]\n"])
    wrapped = at_normal_priority(OnlineRecorder)
    assert wrapped.__name__ == "OnlineRecorder" and issubclass(wrapped, OnlineRecorder)
