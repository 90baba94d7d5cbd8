"""The reward endpoint on Ray Serve: HTTP and handle, batching, bad requests, overload, and a
replica killed under load.

One Serve application (two replicas) is shared by the module: Serve takes seconds to start.
Its model is an untrained classifier checkpoint loaded by the production loader, given a fixed
compute time per batch (`SlowLoader`), so that requests are reliably in flight and capacity is
known: 2 replicas x 4 ongoing + 8 queued = 16 requests at once. Everything runs on loopback,
every wait is on a condition with a generous deadline, and what is asserted holds whatever the
timing (statuses, retries, answers; never speeds).
"""

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import ray.cloudpickle
import torch

from pipelines.classifier.model import (
    ClassifierConfig,
    RewardClassifier,
    camera_batch,
    load_reward_model,
    save_model,
)
from serving.client import HandleRewardClient, HTTPRewardClient, RewardUnavailable
from serving.config import DEPLOYMENT, RewardAppConfig, ServeConfig
from serving.driver import serve_reward
from serving.request_body import RewardRequestError, encode_png

APP = "reward-test"
CAMS = ["observation.images.front", "observation.images.wrist"]
SIZE = 128
REPLICAS, ONGOING, QUEUED, BATCH = 2, 4, 8, 4
CAPACITY = REPLICAS * ONGOING + QUEUED  # requests the endpoint holds at once


class SlowLoader:
    """The production loader, with `delay_s` of compute per batch (a slower model).

    While the file `hold` exists, every batch waits for it to go, and the replica marks that it
    holds one (`<hold>.<pid>`): a test can then kill a replica that surely has requests in
    flight."""

    def __init__(self, delay_s: float, hold: str | None = None):
        self.delay_s = delay_s
        self.hold = hold

    def __call__(self, checkpoint: str):
        model = load_reward_model(checkpoint, device="cpu")
        fast = model.probabilities

        def slow(images):
            time.sleep(self.delay_s)  # the model's compute time, not a synchronization
            while self.hold and os.path.exists(self.hold):
                open(f"{self.hold}.{os.getpid()}", "w").close()
                time.sleep(0.01)
            return fast(images)

        model.probabilities = slow
        return model


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # replicas can load SlowLoader


@dataclass
class Endpoint:
    url: str
    port: int
    handle: object
    local: object  # the same checkpoint, loaded here
    hold: str  # SlowLoader's hold file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(ray_cluster, tmp_path_factory):
    from ray import serve

    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=SIZE))
    checkpoint = save_model(tmp_path_factory.mktemp("reward") / "ckpt", model, name="test")
    port = _free_port()
    app = RewardAppConfig(
        checkpoint=checkpoint,
        num_replicas=REPLICAS,
        max_batch_size=BATCH,
        batch_wait_timeout_s=0.01,
        max_ongoing_requests=ONGOING,
        max_queued_requests=QUEUED,
        num_cpus=0,
        threads=1,
    )
    cfg = ServeConfig(app, port=port, name=APP)
    hold = str(tmp_path_factory.mktemp("hold") / "hold")
    handle = serve_reward(cfg, loader=SlowLoader(0.03, hold))
    try:
        yield Endpoint(
            f"http://127.0.0.1:{port}/reward",
            port,
            handle,
            load_reward_model(checkpoint, "cpu"),
            hold,
        )
    finally:
        serve.shutdown()


PATIENT = {"timeout_s": 120, "deadline_s": 300}  # a busy machine answers late, not wrongly


def _frames(seed: int, size: int = SIZE) -> dict:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for c in CAMS}


def _post(port: int, body: bytes, method: str = "POST", path: str = "/reward"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _replicas() -> set[str]:
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#")
    }


def _pid(actor_name: str) -> int:
    actor = ray.get_actor(actor_name, namespace="serve")
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=120)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _wait_for(condition, deadline_s: float, what: str):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


# ----------------------------------------------------------------------------- answers


def test_http_and_handle_answer_what_the_model_says(endpoint):
    http_json = HTTPRewardClient(endpoint.url, **PATIENT)
    http_npy = HTTPRewardClient(endpoint.url, body="npy", **PATIENT)
    by_handle = HandleRewardClient(endpoint.handle, **PATIENT)
    info = http_json.info()
    assert info["cameras"] == CAMS and info["image_size"] == SIZE
    assert info["max_batch_size"] == BATCH and info["model"] == "test@0 (small_convnet)"
    for seed in range(3):
        frames = _frames(seed)
        want = float(endpoint.local.probabilities(camera_batch(frames, CAMS, SIZE))[0])
        short = {c.rsplit(".", 1)[1]: v for c, v in frames.items()}  # "front", "wrist"
        for answer in (
            http_json.score(frames),
            http_json.score(short),
            http_npy.score(frames),
            by_handle.score(frames),
        ):
            assert set(answer) == {"probability", "success", "threshold", "model"}
            assert answer["probability"] == pytest.approx(want, abs=1e-5)
            assert answer["threshold"] == 0.5 and answer["success"] == (want >= 0.5)
    assert http_json.retried == http_npy.retried == by_handle.retried == 0
    status, body = _post(endpoint.port, b"", "GET", "/-/healthz")
    assert status == 200


def _json(images: dict) -> bytes:
    return json.dumps({"images": images}).encode()


def test_malformed_requests_answer_400_in_one_line(endpoint):
    good = {c: encode_png(v) for c, v in _frames(0).items()}
    small = {c: encode_png(v) for c, v in _frames(0, 64).items()}
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, SIZE, SIZE, 3), np.float32))
    floats = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, SIZE, SIZE, 3), np.uint8))
    three = buf.getvalue()
    cases = [
        (b"", "empty body"),
        (b"{not json", "neither JSON nor a .npy array"),
        (b'{"pictures": {}}', 'expected {"images"'),
        (_json({**good, CAMS[0]: "@@not base64@@"}), "not valid base64"),
        (_json({**good, CAMS[0]: base64.b64encode(b"hello").decode()}), "not a PNG or JPEG"),
        (_json({CAMS[0]: good[CAMS[0]]}), "missing ['observation.images.wrist']"),
        (_json({**good, "top": good[CAMS[0]]}), "the model takes"),
        (_json(small), "64x64, the model takes 128x128"),
        (floats, ".npy array of float32: expected uint8"),
        (three, "expected 2 x H x W x 3"),
        (b"\x93NUMPY\x01\x00garbage", "not a readable .npy array"),
    ]
    for body, message in cases:
        status, data = _post(endpoint.port, body)
        error = json.loads(data)["error"]
        assert status == 400, (message, data)
        assert message in error and "\n" not in error
    assert _post(endpoint.port, _json(good), "PUT")[0] == 405
    assert _post(endpoint.port, _json(good))[0] == 200  # still serving
    client = HTTPRewardClient(endpoint.url, **PATIENT)
    with pytest.raises(RewardRequestError, match="HTTP 400: .*missing"):
        client.score({CAMS[0]: _frames(1)[CAMS[0]]})
    by_handle = HandleRewardClient(endpoint.handle, **PATIENT)
    with pytest.raises(RewardRequestError, match="64x64, the model takes 128x128") as refused:
        by_handle.score(_frames(1, 64))
    assert "\n" not in str(refused.value)
    assert client.retried == by_handle.retried == 0  # a refused request is not retried


def test_requests_from_many_robots_are_batched(endpoint):
    answers, failures = [], []

    def robot(seed):
        client = HTTPRewardClient(endpoint.url, **PATIENT)
        try:
            for i in range(6):
                answers.append(client.score(_frames(seed * 10 + i)))
        except Exception as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=robot, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads) and failures == [] and len(answers) == 48
    seen = Counter()
    for _ in range(10):  # each call reaches one replica or the other
        sizes = endpoint.handle.info.remote().result(timeout_s=120)["batch_sizes"]
        seen.update({int(k): v for k, v in sizes.items()})
    assert max(seen) > 1 and max(seen) <= BATCH  # batched across robots, never past the cap


# ----------------------------------------------------------------------------- reliability


def test_overload_answers_503_keeps_serving_and_memory_stays_bounded(endpoint):
    """Twice the capacity: 2 x 16 robots, each sending as soon as it has its answer."""
    pids = {name: _pid(name) for name in _replicas()}
    proxy = next(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_PROXY_ACTOR")
    )
    pids[proxy] = _pid(proxy)
    statuses: Counter = Counter()
    lock = threading.Lock()
    frames = _frames(7)

    def robot(requests):
        client = HTTPRewardClient(endpoint.url, body="npy", cameras=CAMS, retries=0, **PATIENT)
        for _ in range(requests):
            with contextlib.suppress(RewardUnavailable):  # a 503: counted in client.statuses
                client.score(frames)
        with lock:
            statuses.update(client.statuses)

    def overload(requests):
        threads = [threading.Thread(target=robot, args=(requests,)) for _ in range(2 * CAPACITY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads), "a request hung"

    overload(3)  # warm up: first allocations of every process
    before = {name: _rss_mb(pid) for name, pid in pids.items()}
    statuses.clear()
    overload(10)  # 320 requests of 98 KB each: 31 MB through the endpoint
    after = {name: _rss_mb(pid) for name, pid in pids.items()}
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0 and statuses[200] > 0, statuses
    grown = {name: after[name] - before[name] for name in pids}
    assert max(grown.values()) < 24, grown  # far less than the traffic: nothing piles up
    assert HTTPRewardClient(endpoint.url, **PATIENT).score(frames)["model"]  # still serving


def test_a_killed_replica_is_replaced_and_clients_retry(endpoint):
    from ray import serve

    replicas = _wait_for(lambda: len(_replicas()) == REPLICAS and _replicas(), 60, "replicas")
    stop = threading.Event()
    answered: list[int] = []
    failures, clients = [], []
    frames = _frames(3)

    def robot(client):
        clients.append(client)
        try:
            while not stop.is_set():
                client.score(frames)
                answered.append(1)
        except Exception as e:  # reported below
            failures.append(e)

    def http_client():
        return HTTPRewardClient(endpoint.url, retries=10, **PATIENT)

    def handle_client():
        return HandleRewardClient(endpoint.handle, retries=10, **PATIENT)

    threads = [
        threading.Thread(target=robot, args=(make(),))
        for make in [http_client] * 4 + [handle_client] * 2
    ]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(answered) >= 20, 300, "answers before the kill")
        victim = sorted(replicas)[0]
        victim_pid = _pid(victim)
        held = f"{endpoint.hold}.{victim_pid}"
        open(endpoint.hold, "w").close()  # every batch waits: requests stay in flight
        try:
            _wait_for(lambda: os.path.exists(held), 300, "a batch in flight on the victim")
            os.kill(victim_pid, signal.SIGKILL)
        finally:
            os.unlink(endpoint.hold)
        killed_at = len(answered)

        def replaced():
            now = _replicas()
            if victim in now or len(now) != REPLICAS:
                return False
            app = serve.status().applications[APP].deployments[DEPLOYMENT]
            return app.replica_states.get("RUNNING", 0) == REPLICAS

        _wait_for(replaced, 300, "a new replica")
        _wait_for(lambda: len(answered) >= killed_at + 20, 300, "answers after the replacement")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert failures == [], failures  # every request was answered, after retries if need be
    # the requests in flight on the killed replica ended with an error status (HTTP 5xx, a
    # dropped connection, a dead actor on the handle), and the clients retried them
    errors = Counter()
    for c in clients:
        errors.update({s: n for s, n in getattr(c, "statuses", {}).items() if s != 200})
    assert sum(c.retried for c in clients) > 0, errors


# ----------------------------------------------------------------------------- direct ingress


def test_serve_reward_command_answers_on_its_direct_port(tmp_path):
    """`python -m serving.reward CKPT --direct-port D` as a user runs it (its own Ray cluster,
    started with Serve's direct ingress): the replica answers the same API on D, Serve's proxy
    still answers on --port, a killed replica comes back on D, and SIGTERM stops it cleanly."""
    import subprocess

    torch.manual_seed(1)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=SIZE))
    checkpoint = save_model(tmp_path / "ckpt", model, name="direct")
    local = load_reward_model(checkpoint, "cpu")
    port, direct = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-m", "serving.reward", checkpoint, "--port", str(port)]
    with socket.socket() as busy:  # a taken direct port: one line, before Ray starts
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = subprocess.run(
            [*command, "--direct-port", str(taken)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        f"python -m serving.reward: error: --direct-port {taken}: 127.0.0.1:{taken} is "
        "already in use"
    )
    proc = subprocess.Popen(
        [*command, "--direct-port", str(direct), "--cpus-per-replica", "0"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        _wait_for(
            lambda: any("Ctrl-C" in s for s in lines) or proc.poll() is not None,
            400,
            "serve-reward to start",
        )
        assert proc.poll() is None, "".join(lines)
        url = f"http://127.0.0.1:{direct}/reward"
        assert any(f"direct (a replica, no proxy): {url}" in s for s in lines), "".join(lines)
        frames = _frames(5)
        want = float(local.probabilities(camera_batch(frames, CAMS, SIZE))[0])
        for at in (url, f"http://127.0.0.1:{port}/reward"):
            for body in ("json", "npy"):
                answer = HTTPRewardClient(at, body=body, **PATIENT).score(frames)
                assert answer["probability"] == pytest.approx(want, abs=1e-5)
                assert answer["model"] == "direct@0 (small_convnet)"
        status, reply = _post(direct, b"not an image")
        assert status == 400 and b"neither JSON nor a .npy" in reply
        assert _post(direct, b"", "GET", "/-/healthz")[0] == 200
        # a killed replica is replaced on the same port, and a client's retries reach it
        victim = _wait_for(lambda: _replica_pids(proc.pid), 120, "the replica's process")
        os.kill(victim[0], signal.SIGKILL)
        robot = HTTPRewardClient(url, retries=200, backoff_s=0.2, timeout_s=120, deadline_s=400)
        answer = robot.score(frames)
        assert answer["probability"] == pytest.approx(want, abs=1e-5)
        assert _wait_for(lambda: _replica_pids(proc.pid), 120, "the new replica") != victim
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    reader.join(timeout=60)
    assert any("Stopped." in s for s in lines), "".join(lines)


def _replica_pids(root: int) -> list[int]:
    """The Serve replica processes among the descendants of process `root`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::ServeReplica"):
                        found.append(pid)
            except OSError:
                continue
    return sorted(found)


# ----------------------------------------------------------------------------- hostile requests


def _chunked_post(port: int, path: str, chunks, headers: dict) -> tuple[int, bytes]:
    """POST a chunked body (no Content-Length); the server may answer before it is all sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.putrequest("POST", path)
        for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(k, v)
        conn.endheaders()
        with contextlib.suppress(OSError):  # the server may close once it has refused
            for chunk in chunks:
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_token_guarded_endpoint_refuses_hostile_requests_over_http(endpoint, tmp_path):
    """A second application on the same proxy, with a token and --resize: 401 before anything
    else (GET tells nothing), then 400s for a deep JSON, an empty .npy image and a PNG bomb, 413
    for a chunked body past the limit; a client with the token is answered."""
    from ray import serve

    from serving.deployment import reward_app
    from tests.serving.test_hardening import json_of, npy_header, png_declaring

    token = "integration-token-0123456789"
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=SIZE))
    checkpoint = save_model(tmp_path / "ckpt", model, name="guarded")
    app = RewardAppConfig(checkpoint=checkpoint, num_cpus=0, threads=1, resize=True, token=token)
    route = "/reward-guarded"
    serve.run(reward_app(app, SlowLoader(0.0)), name="guarded", route_prefix=route)
    try:
        url = f"http://127.0.0.1:{endpoint.port}{route}"
        status, data = _post(endpoint.port, b"", "GET", route)
        assert status == 401 and b"cameras" not in data and b"guarded" not in data
        stranger = HTTPRewardClient(url, token="", **PATIENT)
        with pytest.raises(RewardUnavailable, match="HTTP 401"):
            stranger.score(_frames(0))
        assert stranger.retried == 0
        robot = HTTPRewardClient(url, token=token, **PATIENT)
        assert robot.info()["model"] == "guarded@0 (small_convnet)"
        assert 0 <= robot.score(_frames(0, 96))["probability"] <= 1  # resized
        bearer = {"Authorization": f"Bearer {token}"}
        bomb = png_declaring(8192, 8192)
        for body, message in [
            (b'{"images": ' * 100_000 + b"}" * 100_000, "brackets"),
            (npy_header((2, 1, 0, 3)), "0x1, an empty image"),
            (npy_header((2, 100_000, 100_000, 3)), "far above"),
            (json_of({"top": bomb, "side": bomb}), "the model takes"),
            (json_of({"front": bomb, "wrist": bomb}), "8192x8192, far above"),
        ]:
            conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=120)
            try:
                conn.request("POST", route, body=body, headers=bearer)
                response = conn.getresponse()
                status, data = response.status, response.read()
            finally:
                conn.close()
            assert status == 400 and message in json.loads(data)["error"], (message, data)
        mib = bytes(2**20)
        status, data = _chunked_post(endpoint.port, route, [mib] * 24, bearer)
        assert status == 413, data
        status, _ = _chunked_post(endpoint.port, route, [mib] * 24, {})
        assert status == 401
        assert robot.score(_frames(1))["model"]  # still serving
    finally:
        serve.delete("guarded")
