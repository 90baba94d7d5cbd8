"""`flywheel export`: checkpoints of every exportable kind become model.safetensors + config.json
+ flywheel_model.py, which runs without Flywheel and computes what the checkpoint computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import export
from pipelines.classifier.model import (
    ClassifierConfig,
    RewardClassifier,
    RewardModel,
    camera_batch,
    save_model,
)
from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig
from pipelines.policy.model import ChunkPolicy, PolicyConfig
from pipelines.policy.runner import ChunkPolicyRunner
from pipelines.runtime import exported
from pipelines.runtime.checkpoints import CHECKPOINT_STATE, write_checkpoint
from pipelines.simulator.tasks import TASKS
from pipelines.vision.encoders import ENCODERS, spatial_encoders
from pipelines.vision.images import resize
from pipelines.vision.prompts import tokenize

CAMERAS = ["observation.images.front", "observation.images.wrist"]
TASK = TASKS["reach_grasp"].text
LABELED = {"0": f"{TASK}, Advantage: negative", "1": f"{TASK}, Advantage: positive"}
SIZE = 16  # the models' input; the observations' frames are 32 x 32 (resized, exactly, by 2)
BLOCKED = ("pipelines", "actors", "serving", "ray", "pyarrow", "mlflow", "pandas", "cv2", "av")


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float weight and buffer moved off its initial value (batch-norm statistics and
    stds kept positive), so that a weight the loader missed changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=g)
                if name.endswith(("running_var", "_std")):
                    t.copy_(0.5 + 0.2 * noise.abs())
                else:
                    t.mul_(1.0 + 0.3 * noise).add_(0.05 * noise)
    return model.eval()


def policy_checkpoint(folder: Path, encoder: str = "spatial_softmax", **meta) -> ChunkPolicy:
    config = PolicyConfig(
        cameras=CAMERAS, chunk_size=4, image_size=SIZE, encoder=encoder, feature_dim=8,
        hidden_dim=16, prompt_dim=8,
    )  # fmt: skip
    model = randomized(ChunkPolicy(config))
    rng = np.random.default_rng(1)
    stats = {
        "state": {"mean": rng.normal(0, 20, 6).tolist(), "std": rng.uniform(5, 30, 6).tolist()},
        "action": {
            "mean": rng.normal(0, 3, (4, 6)).tolist(),
            "std": rng.uniform(1, 9, (4, 6)).tolist(),
        },
    }
    model.set_normalization(stats)
    body = {
        "kind": "policy", "step": 7, "model": config.to_dict(), "normalization": stats,
        "tasks": LABELED, "conditioning": "prompt", "n_action_steps": 3,
        "env": {"task": "reach_grasp", "image_size": 32, "fps": 10, "action_mode": "joint"},
        "dataset": "/data/pick", **meta,
    }  # fmt: skip
    folder.mkdir(parents=True)
    write_checkpoint(folder, "policy", {"model": model.state_dict(), "step": 7}, body)
    return model


def classifier_checkpoint(folder: Path, encoder: str = "small_convnet") -> RewardClassifier:
    model = randomized(RewardClassifier(ClassifierConfig(CAMERAS, image_size=32, encoder=encoder)))
    save_model(folder, model, step=5, threshold=0.7, name="cube")
    return model


def estimator_checkpoint(folder: Path, variant: str, encoder="resnet_small", size=SIZE):
    config = EstimatorConfig(
        variant=variant, cameras=CAMERAS, image_size=size, encoder=encoder, feature_dim=8,
        hidden_dim=16, prompt_dim=8,
    )  # fmt: skip
    model = randomized(AdvantageEstimator(config))
    meta = {"step": 3, "variant": variant, "model": config.to_dict(), "metrics": {}}
    if variant == "recap":
        state = {"mean": [10.0] * 6, "std": [20.0] * 6, "source": "meta/stats.json"}
        model.set_state_normalization(state["mean"], state["std"])
        meta["recap"] = {"c_fail_coef": 1.0, "t_max": {TASK: 40}, "bins": 201}
        meta["recap"]["state_normalization"] = state
    folder.mkdir(parents=True)
    write_checkpoint(folder, "estimator", {"model": model.state_dict(), "step": 3}, meta)
    return model


def observations(n: int, seed: int, side: int = 2 * SIZE) -> dict:
    """n observations in LeRobot's feature names (frames 32 x 32, states in degrees)."""
    rng = np.random.default_rng(seed)
    obs = {key: rng.integers(0, 256, (n, side, side, 3)).astype(np.uint8) for key in CAMERAS}
    obs["observation.state"] = rng.normal(0, 40, (n, 6)).astype(np.float32)
    return obs


def frame(obs: dict, i: int) -> dict:
    return {k: v[i] for k, v in obs.items()}


def flywheel_images(obs: dict, size: int = SIZE) -> np.ndarray:
    """N x C x S x S x 3 as Flywheel's own paths resize them (OpenCV)."""
    return np.stack([[resize(f, size) for f in obs[key]] for key in CAMERAS], axis=1)


def export_to(checkpoint: Path, out: Path, capsys) -> Path:
    assert export.main([str(checkpoint), str(out)]) == 0, capsys.readouterr().err
    assert "outputs equal the checkpoint's" in capsys.readouterr().out
    return out


# ----------------------------------------------------------------------------- without Flywheel

SCRIPT = """
import json, os, runpy, sys
import numpy as np

BLOCKED = {blocked!r}

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the exported model must not need it")

sys.meta_path.insert(0, Blocked())
assert not [p for p in sys.path if p.startswith("{repo}") and ".venv" not in p], sys.path
for job in json.load(open(sys.argv[1])):
    sys.path.insert(0, job["folder"])
    from flywheel_model import load_exported
    import torch
    torch.set_num_threads(1)
    model = load_exported(job["folder"])
    obs = dict(np.load(job["observations"]))
    if "task" in job:
        obs["task"] = job["task"]
    history = dict(np.load(job["history"])) if "history" in job else None
    out = {{}}
    for i in range(len(obs["observation.state"])):
        one = {{k: (v if k == "task" else v[i]) for k, v in obs.items()}}
        kw = dict(job.get("options", {{}}))
        if history is not None:
            kw["history"] = {{k: v[i] for k, v in history.items()}}
        out[f"single{{i}}"] = np.asarray(model.predict(one, **kw))
    kw = dict(job.get("options", {{}}))
    if history is not None:
        kw["history"] = history
    if isinstance(obs.get("task"), str):
        obs["task"] = [obs["task"]] * len(obs["observation.state"])
    out["batch"] = np.asarray(model.predict(obs, **kw))
    np.savez(job["result"], **out)
print("example:")
os.chdir(sys.argv[2])  # where the usage example's "exported" folder is
runpy.run_path("example.py", run_name="__main__")
print("smoke:")
sys.argv = ["flywheel_model.py", job["folder"]]
runpy.run_path(job["folder"] + "/flywheel_model.py", run_name="__main__")
print("modules:", json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every kind exported (the policy twice: as is, and with CFG), and what the exported
    loader predicts for the same observations in a clean `python -I` without Flywheel."""
    root = tmp_path_factory.mktemp("export")
    models, jobs = {}, []

    def add(name, checkpoint_of, options=None, task=None, history=False):
        ckpt, out = root / f"{name}-ckpt", root / f"{name}-out"
        models[name] = checkpoint_of(ckpt)
        assert export.main([str(ckpt), str(out)]) == 0
        obs = observations(3, seed=len(jobs))
        np.savez(root / f"{name}-obs.npz", **obs)
        job = {"folder": str(out), "observations": str(root / f"{name}-obs.npz")}
        job["result"] = str(root / f"{name}-result.npz")
        if history:
            np.savez(root / f"{name}-hist.npz", **observations(3, seed=99))
            job["history"] = str(root / f"{name}-hist.npz")
        job.update({"options": options or {}, **({"task": task} if task else {})})
        jobs.append(job)

    add("policy", policy_checkpoint)
    add("policy-cfg", policy_checkpoint, {"cfg_scale": 2.5}, task=LABELED["1"])
    add("classifier", classifier_checkpoint)
    for variant in ("kai0", "pi06", "recap"):
        task = TASK if variant == "recap" else None
        add(variant, lambda p, v=variant: estimator_checkpoint(p, v), None, task, variant == "kai0")
    (root / "jobs.json").write_text(json.dumps(jobs))
    example = export.__doc__.split("\n\n", 1)[1].split("\n\nA classifier")[0]
    (root / "example.py").write_text(textwrap.dedent(example))
    policy_checkpoint(root / "example-ckpt")
    assert export.main([str(root / "example-ckpt"), str(root / "exported")]) == 0
    script = root / "run_exported.py"
    repo = str(Path(__file__).resolve().parents[2])
    script.write_text(SCRIPT.format(blocked=BLOCKED, repo=repo))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(root / "jobs.json"), str(root)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = {name: dict(np.load(root / f"{name}-result.npz")) for name in models}
    return root, models, results, done.stdout


def close(got, want):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6, atol=1e-6)


def test_the_loader_runs_without_flywheel_ray_pyarrow_or_mlflow(exports):
    *_, stdout = exports
    modules = json.loads(stdout.rsplit("modules:", 1)[1])
    assert not set(modules) & set(BLOCKED)
    assert {"torch", "numpy", "safetensors", "flywheel_model"} <= set(modules)
    smoke = json.loads(stdout.split("smoke:\n")[1].splitlines()[0])  # flywheel_model.py OUT
    assert smoke["kind"] == "estimator" and smoke["output"] == [2]


def test_the_usage_example_runs_an_exported_policy(exports):
    """export's docstring (its --help, and the README's example) runs as it is written."""
    *_, stdout = exports
    lines = stdout.split("example:\n")[1].split("smoke:\n")[0].splitlines()
    assert "'image_size': 16" in lines[0] and lines[0].endswith("degrees")
    printed = " ".join(lines[1:]).replace("[", " ").replace("]", " ").split()
    assert len(printed) == 3 * 6 and np.isfinite(np.array(printed, float)).all()  # 3 actions


def test_an_exported_policy_predicts_the_checkpoints_action_chunks(exports, one_torch_thread):
    root, models, results, _ = exports
    model, obs = models["policy"], dict(np.load(root / "policy-obs.npz"))
    runner = ChunkPolicyRunner(model, LABELED["1"], TASK)  # trained with the labels: positive
    want = [runner.chunk(frame(obs, i)) for i in range(3)]
    for i in range(3):
        assert results["policy"][f"single{i}"].shape == (4, 6)
        close(results["policy"][f"single{i}"], want[i])
    close(results["policy"]["batch"], np.stack(want))
    guided = ChunkPolicyRunner(models["policy-cfg"], LABELED["1"], TASK, cfg_scale=2.5)
    obs = dict(np.load(root / "policy-cfg-obs.npz"))
    for i in range(3):
        close(results["policy-cfg"][f"single{i}"], guided.chunk(frame(obs, i)))
    assert np.abs(results["policy-cfg"]["single0"] - results["policy"]["single0"]).max() > 1e-3


def test_an_exported_classifier_predicts_the_success_probabilities(exports, one_torch_thread):
    root, models, results, _ = exports
    obs = dict(np.load(root / "classifier-obs.npz"))
    images = camera_batch({k: obs[k] for k in CAMERAS}, CAMERAS, 32)
    want = RewardModel(models["classifier"], 0.7, "cube").probabilities(images)
    close(results["classifier"]["batch"], want)
    close([results["classifier"][f"single{i}"] for i in range(3)], want)
    assert json.loads((root / "classifier-out/config.json").read_text())["threshold"] == 0.7


@pytest.mark.parametrize("variant", ["kai0", "pi06", "recap"])
def test_an_exported_value_model_predicts_the_values(exports, variant, one_torch_thread):
    root, models, results, _ = exports
    obs = dict(np.load(root / f"{variant}-obs.npz"))
    images = torch.from_numpy(flywheel_images(obs))[:, None]
    state = torch.from_numpy(obs["observation.state"])[:, None]
    tokens = torch.from_numpy(tokenize([TASK] * 3, 4096)) if variant == "recap" else None
    if variant == "kai0":  # history first
        old = dict(np.load(root / "kai0-hist.npz"))
        images = torch.cat([torch.from_numpy(flywheel_images(old))[:, None], images], 1)
        state = torch.cat([torch.from_numpy(old["observation.state"])[:, None], state], 1)
    with torch.no_grad():
        want = models[variant](images, state, tokens).numpy()
    close(results[variant]["batch"], want)
    close([results[variant][f"single{i}"] for i in range(3)], want)
    assert np.ptp(want) > 1e-4  # the inputs matter: not a constant output


def test_config_json_says_what_running_the_model_needs(tmp_path, capsys):
    policy_checkpoint(tmp_path / "ckpt", unit="range_m100_100")
    out = export_to(tmp_path / "ckpt", tmp_path / "out", capsys)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "flywheel_model.py",
        "model.safetensors",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "policy" and config["unit"] == "range_m100_100"
    assert config["inputs"]["cameras"] == CAMERAS and config["inputs"]["image_size"] == SIZE
    assert config["inputs"]["state"] == {"key": "observation.state", "dim": 6}
    assert config["outputs"]["action"] == [4, 6] and config["n_action_steps"] == 3
    assert config["prompt"]["default"] == config["prompt"]["positive"] == LABELED["1"]
    assert config["prompt"]["negative"] == LABELED["0"] and config["prompt"]["bare"] == TASK
    assert config["prompt"]["vocab"] == 4096 and "BLAKE2b" in config["prompt"]["hashing"]
    assert len(config["normalization"]["action"]["std"]) == 4
    assert (out / "flywheel_model.py").read_text() == Path(exported.__file__).read_text()
    policy_checkpoint(tmp_path / "bare")  # no unit recorded: Flywheel's degrees
    (tmp_path / "o2").mkdir()  # an empty OUT is taken
    config = json.loads(
        (export_to(tmp_path / "bare", tmp_path / "o2", capsys) / "config.json").read_text()
    )
    assert config["unit"] == "degrees"


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_exports_to_the_same_outputs(tmp_path, encoder, capsys, one_torch_thread):
    size = 64 if encoder == "drqv2" else SIZE  # DrQ-v2's linear layer is sized for 64 px
    original = estimator_checkpoint(tmp_path / "est", "pi06", encoder, size)
    models = [(original, export_to(tmp_path / "est", tmp_path / "est-out", capsys))]
    if encoder in spatial_encoders():
        original = classifier_checkpoint(tmp_path / "clf", encoder)
        models.append((original, export_to(tmp_path / "clf", tmp_path / "clf-out", capsys)))
    for original, out in models:
        model = exported.load_exported(out)
        inputs = model.example_inputs(seed=3)
        with torch.no_grad():
            want = original(*(torch.from_numpy(a) for a in inputs)).numpy()
        close(model.run(*inputs), want)


def test_a_run_folder_exports_its_latest_loadable_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    classifier_checkpoint(run / "checkpoint_a")
    newest = run / "checkpoint_b"
    classifier_checkpoint(newest)
    meta = json.loads((newest / "classifier.json").read_text())
    (newest / "classifier.json").write_text(json.dumps({**meta, "step": 9}))
    data = (newest / CHECKPOINT_STATE).read_bytes()
    (newest / CHECKPOINT_STATE).write_bytes(data[: len(data) // 2])  # Ray's copy, mid-way
    out = export_to(run, tmp_path / "out", capsys)
    source = json.loads((out / "config.json").read_text())["source"]
    assert source["checkpoint"] == str((run / "checkpoint_a").resolve()) and source["step"] == 5


def one_line_refusal(argv, capsys, *needles):
    assert export.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("flywheel export: error:"), err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    one_line_refusal([tmp_path / "nothing", out], capsys, "no such checkpoint or run folder")
    (tmp_path / "empty").mkdir()
    one_line_refusal([tmp_path / "empty", out], capsys, "not a checkpoint folder")
    write_checkpoint(_made(tmp_path / "sel"), "selector", {"model": {}}, {"step": 1})
    one_line_refusal([tmp_path / "sel", out], capsys, "a selector checkpoint", "policy")
    policy_checkpoint(tmp_path / "ckpt")
    (_made(tmp_path / "full") / "x").write_text("mine")
    one_line_refusal([tmp_path / "ckpt", tmp_path / "full"], capsys, "not an empty folder")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]
    (tmp_path / "ckpt" / CHECKPOINT_STATE).write_bytes(b"torn")
    one_line_refusal([tmp_path / "ckpt", out], capsys, "not a loadable checkpoint state")
    policy_checkpoint(tmp_path / "ckpt2")
    meta_file = tmp_path / "ckpt2" / "policy.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "tasks"}))
    one_line_refusal([tmp_path / "ckpt2", out], capsys, "incomplete policy checkpoint", "tasks")
    meta_file.write_text(json.dumps({**meta, "model": {**meta["model"], "hidden_dim": 32}}))
    one_line_refusal([tmp_path / "ckpt2", out], capsys, "weights do not fit")
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_an_export_whose_outputs_differ_is_refused_and_leaves_nothing(
    tmp_path, capsys, monkeypatch
):
    """The export checks the loader against the checkpoint: a drifted copy of an architecture
    (here the policy's action frame flipped) is caught before anything reaches OUT."""
    policy_checkpoint(tmp_path / "ckpt")

    class Drifted(exported.ChunkPolicy):
        def forward(self, images, state, tokens):
            return super().forward(images, state, tokens) - state[:, None, :]

    monkeypatch.setitem(exported.ARCHITECTURES, "policy", Drifted)
    one_line_refusal([tmp_path / "ckpt", tmp_path / "out"], capsys, "has drifted")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))


def test_the_loader_refuses_wrong_folders_and_observations_in_one_line(tmp_path, capsys):
    estimator_checkpoint(tmp_path / "ckpt", "kai0")
    out = export_to(tmp_path / "ckpt", tmp_path / "out", capsys)
    model = exported.load_exported(out)
    obs = frame(observations(1, 0), 0)
    cases = [
        (lambda: model.predict(obs), "history="),
        (lambda: model.predict({**obs, CAMERAS[1]: obs[CAMERAS[1]][..., 0]}, history=obs), "wrist"),
        (lambda: model.predict({CAMERAS[0]: obs[CAMERAS[0]]}, history=obs), "wrist"),
        (lambda: model.predict({**obs, "observation.state": [1.0]}, history=obs), "expected 6"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError, match=needle) as e:
            call()
        assert "\n" not in str(e.value)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "kind": "hilserl"}))
    with pytest.raises(ValueError, match="kind 'hilserl'"):
        exported.load_exported(out)
    config["model"]["hidden_dim"] = 32
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not fit"):
        exported.load_exported(out)
    with pytest.raises(ValueError, match="unreadable"):
        exported.load_exported(tmp_path)


def test_frames_of_any_size_are_resized_as_opencv_resizes_them():
    rng = np.random.default_rng(0)
    for shape, size in [((480, 640), 64), ((128, 128), 64), ((48, 96), 64), ((20, 30), 64)]:
        frame = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
        diff = np.abs(exported.resize(frame, size).astype(int) - resize(frame, size).astype(int))
        assert diff.max() <= 1, (shape, size)
        assert diff.mean() < 0.15, (shape, size)
    frame = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert np.array_equal(exported.resize(frame, 16), resize(frame, 16))  # 2 x 2 means: exact
