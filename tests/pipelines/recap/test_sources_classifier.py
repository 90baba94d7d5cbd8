"""`flywheel outcomes --from classifier:CKPT_OR_URL`: K positive frames in a row, scored by a
tiny trained classifier loaded here or by an HTTP endpoint speaking serve-reward's API."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from pipelines.classifier.model import ClassifierConfig, RewardClassifier, save_model
from pipelines.dataset import DatasetError, EpisodeRecorder, LeRobotDataset
from pipelines.outcomes import main
from pipelines.recap.sources import (
    classifier_outcomes,
    consecutive_success,
    parse_source,
)

FRONT = "observation.images.front"
DARK, BRIGHT = 30, 220
# bright (success) frames per episode: a run of 5, a run of 2 then 1, none
BRIGHT_FRAMES = {0: {3, 4, 5, 6, 7}, 1: {2, 3, 6}, 2: set()}
LENGTH = 10


def files(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def frame(shade: int, rng) -> np.ndarray:
    noise = rng.integers(-12, 13, (32, 32, 3))
    return np.clip(shade + noise, 0, 255).astype(np.uint8)


def recording(root, version: str, cameras=(FRONT,)):
    """Three episodes whose camera shows BRIGHT on BRIGHT_FRAMES, DARK elsewhere."""
    rng = np.random.default_rng(0)
    cams = {c: (32, 32) for c in cameras}
    rec = EpisodeRecorder(
        root,
        fps=10,
        task="t",
        joint_names=["a", "b"],
        cameras=cams,
        version=version,
        vcodec="mpeg4",
    )
    for bright in BRIGHT_FRAMES.values():
        rec.begin()
        for i in range(LENGTH):
            img = frame(BRIGHT if i in bright else DARK, rng)
            rec.add(np.zeros(2, np.float32), np.zeros(2, np.float32), {c: img for c in cams})
        rec.save(success=False)
    rec.close()
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A classifier trained for a few steps: bright front frames are successes."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = RewardClassifier(ClassifierConfig(cameras=[FRONT], image_size=16))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        rng = np.random.default_rng(1)
        for _ in range(40):
            shades = rng.choice([DARK, BRIGHT], 16)
            x = np.stack([frame(s, rng)[:16, :16] for s in shades])[:, None]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(torch.from_numpy(x)), torch.from_numpy((shades == BRIGHT).astype(np.float32))
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    run = tmp_path_factory.mktemp("classifier-run")
    save_model(run / "checkpoint_000040", model.eval(), step=40, threshold=0.5)
    return run / "checkpoint_000040"


def test_k_consecutive_positive_frames():
    assert consecutive_success([0, 1, 1, 1, 0], 3)
    assert not consecutive_success([1, 1, 0, 1, 1, 0, 1], 3)  # five positives, never 3 in a row
    assert consecutive_success([1, 1, 0, 1, 1, 0, 1], 2)
    assert consecutive_success([0, 0, 1], 1) and not consecutive_success([0, 0, 0], 1)
    assert not consecutive_success([1, 1], 3)  # shorter than K
    assert not consecutive_success([], 1)


def test_the_source_text_and_its_k():
    local = parse_source("classifier:runs/c", 2)
    assert (local.target, local.success_frames, local.served) == ("runs/c", 2, False)
    assert local.name == "classifier:runs/c (2 positive frames in a row)"
    assert parse_source("classifier:HTTPS://h:8000/reward").served
    for text, k, message in [
        ("classifier:", 3, "not a source"),
        ("classifier:c", 0, "--success-frames 0: at least 1"),
    ]:
        with pytest.raises(DatasetError, match=message):
            parse_source(text, k)


class BrightScorer:
    """A fake scorer: a frame is positive when its first camera is bright; counts its calls."""

    name = "bright"
    image_size = 8

    def __init__(self, cameras):
        self.cameras = cameras
        self.shapes = []

    def positive(self, images):
        self.shapes.append(images.shape)
        return images[:, 0].mean(axis=(1, 2, 3)) > 128


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_fake_scorer_sees_every_frame_at_its_size(tmp_path, version):
    ds = LeRobotDataset(recording(tmp_path / "ds", version))
    scorer = BrightScorer([FRONT])
    assert classifier_outcomes(ds, scorer, 3) == {0: True, 1: False, 2: False}
    assert scorer.shapes == [(LENGTH, 1, 8, 8, 3)] * 3
    assert classifier_outcomes(ds, scorer, 2) == {0: True, 1: True, 2: False}
    with pytest.raises(DatasetError, match="no camera observation.images.wrist, which the"):
        classifier_outcomes(ds, BrightScorer([FRONT, "observation.images.wrist"]), 3)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_trained_checkpoint_and_its_run_folder(checkpoint, tmp_path, version, capsys):
    root = recording(tmp_path / "ds", version)
    assert main([str(root), "--from", f"classifier:{checkpoint}"]) == 0
    assert LeRobotDataset(root).outcomes == {0: True, 1: False, 2: False}
    out = capsys.readouterr().out
    assert f"classifier:{checkpoint} (3 positive frames in a row): 1 success, 2 failure" in out
    # the run folder means its latest checkpoint; K = 2 turns episode 1 into a success
    run = checkpoint.parent
    assert main([str(root), "--from", f"classifier:{run}", "--success-frames", "2"]) == 0
    assert LeRobotDataset(root).outcomes == {0: True, 1: True, 2: False}


def test_a_dataset_without_the_classifiers_camera_is_refused(checkpoint, tmp_path, capsys):
    root = recording(tmp_path / "ds", "v2.1", cameras=("observation.images.wrist",))
    before = files(root)
    assert main([str(root), "--from", f"classifier:{checkpoint}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no camera observation.images.front, which the classifier" in err
    assert files(root) == before


def test_what_is_not_a_classifier_is_refused(checkpoint, tmp_path, capsys):
    root = recording(tmp_path / "ds", "v2.1")
    before = files(root)
    empty_run = tmp_path / "run"
    (empty_run / "checkpoint_000001").mkdir(parents=True)
    for target, message in [
        (tmp_path / "nothing", "no such checkpoint or run folder"),
        (empty_run, "no loadable classifier checkpoint in the run folder"),
        (root, "not a classifier checkpoint"),
    ]:
        assert main([str(root), "--from", f"classifier:{target}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert files(root) == before


# --------------------------------------------------------------------------- served


class Endpoint(BaseHTTPRequestHandler):
    """serve-reward's HTTP API, scoring by brightness; requires the token `secret`."""

    protocol_version = "HTTP/1.1"
    posts = 0

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == "Bearer secret":
            return True
        self._answer(401, {"error": "unauthorized"})
        return False

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self._authorized():
            info = {"model": "bright@1", "cameras": [FRONT], "image_size": 16, "threshold": 0.5}
            self._answer(200, info)

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not self._authorized():
            return
        images = np.load(io.BytesIO(body))
        if images.shape != (1, 16, 16, 3):
            self._answer(400, {"error": f"shape {list(images.shape)}"})
            return
        type(self).posts += 1
        p = float(images.mean() > 128)
        self._answer(200, {"probability": p, "success": p >= 0.5, "threshold": 0.5})

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Endpoint.posts = 0
    yield f"http://127.0.0.1:{server.server_address[1]}/reward"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_served_classifier_with_its_token(endpoint, tmp_path, monkeypatch, capsys, version):
    root = recording(tmp_path / "ds", version)
    before = files(root)
    monkeypatch.setenv("FLYWHEEL_REWARD_TOKEN", "wrong")
    assert main([str(root), "--from", f"classifier:{endpoint}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"classifier:{endpoint}: " in err and "401" in err
    assert files(root) == before
    monkeypatch.setenv("FLYWHEEL_REWARD_TOKEN", "secret")
    assert main([str(root), "--from", f"classifier:{endpoint}", "--success-frames", "2"]) == 0
    assert LeRobotDataset(root).outcomes == {0: True, 1: True, 2: False}
    assert Endpoint.posts == 3 * LENGTH  # every frame, resized to the model's size
    assert "bright" not in capsys.readouterr().err


def test_an_unreachable_endpoint_is_one_line(tmp_path, capsys):
    root = recording(tmp_path / "ds", "v2.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    url = f"http://127.0.0.1:{server.server_address[1]}/reward"
    server.server_close()  # nothing listens there now
    assert main([str(root), "--from", f"classifier:{url}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"classifier:{url}: reward endpoint" in err
