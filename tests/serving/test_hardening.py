"""The reward endpoint against hostile requests and careless configs, without a Serve cluster:
decompression bombs, oversized and chunked bodies, deep JSON, empty images, the token, the
client's URL handling, and serve-reward's one-line errors. (The same over HTTP through Serve:
tests/serving/test_reward.py; a property test of the parser: test_request_fuzz.py.)"""

import asyncio
import base64
import http.server
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from starlette.requests import Request

from pipelines.classifier.model import ClassifierConfig, RewardClassifier, save_model
from pipelines.dataset import DatasetError
from serving import reward
from serving.client import HTTPRewardClient, RewardUnavailable
from serving.config import TOKEN_ENV, RewardAppConfig, ServeConfig
from serving.deployment import RewardDeployment
from serving.driver import check_checkpoint, port_free
from serving.request_body import MAX_BODY_BYTES, RewardRequestError, parse_body, read_limited

ROOT = Path(__file__).resolve().parents[2]
CAMS = ["observation.images.front", "observation.images.wrist"]
TOKEN = "t0ken-for-the-tests-0123456789"


def png_declaring(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR declares width x height (what a bomb looks like: a few
    bytes of compressed zeros for a huge image)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    ihdr = bytes(png[12:16]) + struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(png)


def json_of(images: dict[str, bytes]) -> bytes:
    return json.dumps(
        {"images": {k: base64.b64encode(v).decode() for k, v in images.items()}}
    ).encode()


def npy_header(shape, dtype="|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    )
    return buf.getvalue()


# ----------------------------------------------------------------------------- bombs


def test_camera_names_are_checked_before_any_image_is_decoded():
    bomb = png_declaring(8192, 8192)
    body = json_of({"top": bomb, "side": bomb, "back": bomb})  # unknown cameras
    with pytest.raises(RewardRequestError, match="the model takes"):
        parse_body(body, CAMS, 128)
    with pytest.raises(RewardRequestError, match="missing"):
        parse_body(json_of({"front": bomb}), CAMS, 128)


def test_an_image_far_above_the_model_size_is_refused_from_its_header():
    bomb = png_declaring(8192, 8192)
    body = json_of({"front": bomb, "wrist": bomb})
    with pytest.raises(RewardRequestError, match="8192x8192, the model takes 128x128"):
        parse_body(body, CAMS, 128)
    with pytest.raises(RewardRequestError, match="8192x8192, far above .* 2048 pixels a side"):
        parse_body(body, CAMS, 128, resize=True)
    ok = png_declaring(640, 480)  # a camera's frame, resized by the replica: allowed
    with pytest.raises(RewardRequestError, match="not a PNG or JPEG"):  # (its data is 4x4)
        parse_body(json_of({"front": ok, "wrist": ok}), CAMS, 128, resize=True)


def test_bombs_do_not_allocate(tmp_path):
    """In a fresh process: every bomb is refused with a 400 and the peak RSS grows by far less
    than one decoded image (8192 x 8192 x 3 = 200 MB; a 1 x 100000 x 100000 x 3 .npy: 28 GiB)."""
    script = tmp_path / "bombs.py"
    script.write_text(
        "import resource, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.serving.test_hardening import png_declaring, json_of, npy_header, CAMS\n"
        "from serving.request_body import parse_body, RewardRequestError\n"
        "bomb = png_declaring(8192, 8192)\n"
        "bodies = [json_of({'top': bomb, 'side': bomb, 'back': bomb}),\n"
        "          json_of({'front': bomb, 'wrist': bomb}),\n"
        "          npy_header((2, 100000, 100000, 3)) + b'x' * 1000]\n"
        "parse_body(npy_header((2, 8, 8, 3)) + bytes(384), CAMS)  # warm up\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for body in bodies:\n"
        "    for resize in (False, True):\n"
        "        try:\n"
        "            parse_body(body, CAMS, 128, resize)\n"
        "            raise SystemExit('accepted')\n"
        "        except RewardRequestError:\n"
        "            pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 64, done.stdout  # MB


def test_a_huge_npy_header_is_refused_before_allocating():
    body = npy_header((1, 100000, 100000, 3)) + bytes(64)
    tracemalloc.start()  # numpy reports its allocations here
    try:
        with pytest.raises(RewardRequestError, match="the model takes 128x128"):
            parse_body(body, CAMS[:1], 128)
        with pytest.raises(RewardRequestError, match="far above"):
            parse_body(body, CAMS[:1], 128, resize=True)
        with pytest.raises(RewardRequestError, match="float64: expected uint8"):
            parse_body(npy_header((1, 100000, 100000, 3), "<f8"), CAMS[:1], 128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    truncated = npy_header((1, 128, 128, 3)) + bytes(100)
    with pytest.raises(RewardRequestError, match="truncated"):
        parse_body(truncated, CAMS[:1], 128)


# ----------------------------------------------------------------------------- 500s -> 400s


def test_deep_json_and_empty_images_answer_400():
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = b'{"images": {"front": ' + deep + b"}}"
    for body in (deep, nested, b'{"a": ' * 100_000 + b"1" + b"}" * 100_000):
        with pytest.raises(RewardRequestError, match="brackets"):
            parse_body(body, CAMS, 128)
    with pytest.raises(RewardRequestError, match="neither JSON"):
        parse_body(b"1" * 10_000, CAMS, 128)  # an int past Python's digit limit
    empty = npy_header((1, 0, 3)) + b""
    for resize in (False, True):
        with pytest.raises(RewardRequestError, match="0x1, an empty image"):
            parse_body(empty, CAMS[:1], 128, resize)


# ----------------------------------------------------------------------------- the replica


class FakeModel:
    cameras = CAMS
    image_size = 8
    threshold = 0.5
    name = "fake"

    def probabilities(self, x):
        return [0.75] * len(x)


def replica(**config) -> object:
    """The deployment's class, outside Serve, its batch call replaced (Serve's batching needs a
    replica context)."""
    deployment = RewardDeployment.func_or_class(
        RewardAppConfig("ckpt", threads=1, **config).with_token(), loader=lambda _: FakeModel()
    )

    async def score_batch(frame):
        return 0.75

    deployment.score_batch = score_batch
    return deployment


def request(method: str, chunks: list[bytes], pulled: list, headers: dict | None = None):
    """A Starlette request whose body arrives in `chunks` (chunked: no Content-Length);
    `pulled` counts the chunks the app read."""
    messages = iter(chunks)

    async def receive():
        chunk = next(messages, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        pulled.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < len(chunks)}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": "/reward", "headers": raw}
    return Request(scope, receive)


def answer(response) -> tuple[int, dict]:
    return response.status_code, json.loads(response.body)


def test_a_chunked_body_is_stopped_at_the_limit_not_read_whole():
    mib = bytes(2**20)
    chunks = [mib] * 64  # 64 MiB, no Content-Length
    pulled: list = []
    status, body = answer(asyncio.run(replica()(request("POST", chunks, pulled))))
    assert status == 413 and str(MAX_BODY_BYTES) in body["error"]
    assert len(pulled) <= MAX_BODY_BYTES // 2**20 + 1  # never past the limit

    async def endless():
        while True:
            yield mib

    assert asyncio.run(read_limited(endless(), 3 * 2**20)) is None


def test_bodies_are_parsed_off_the_event_loop(monkeypatch):
    import serving.deployment as module

    seen = {}
    real = module.parse_body

    def parse(*args, **kwargs):
        seen["thread"] = threading.get_ident()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "parse_body", parse)
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 8, 8, 3), np.uint8))

    async def call():
        seen["loop"] = threading.get_ident()
        return await replica()(request("POST", [buf.getvalue()], []))

    status, body = answer(asyncio.run(call()))
    assert status == 200 and body["probability"] == 0.75
    assert seen["thread"] != seen["loop"]


def test_a_token_is_checked_before_the_body_is_read_and_get_tells_nothing(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    guarded = replica(token=TOKEN)
    for method, headers in [
        ("GET", {}),
        ("POST", {}),
        ("POST", {"Authorization": "Bearer wrong-token-0123456789"}),
        ("GET", {"Authorization": TOKEN}),  # no scheme
    ]:
        pulled: list = []
        response = asyncio.run(guarded(request(method, [b"x" * 100], pulled, headers)))
        status, body = answer(response)
        assert status == 401 and pulled == []  # nothing read
        assert "fake" not in json.dumps(body) and "cameras" not in body
        assert response.headers["www-authenticate"] == "Bearer"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, body = answer(asyncio.run(guarded(request("GET", [], [], bearer))))
    assert status == 200 and body["model"] == "fake"
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # the environment's token, resolved when built
    status, _ = answer(asyncio.run(replica()(request("GET", [], []))))
    assert status == 401


# ----------------------------------------------------------------------------- the client


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `reply` (status, body), recording headers."""

    def do_GET(self):
        self._reply()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._reply()

    def _reply(self):
        self.server.seen.append(dict(self.headers))
        status, body = self.server.reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen, httpd.reply = [], (200, b"{}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=60)


def test_the_client_sends_its_token_and_does_not_retry_refusals(server, monkeypatch):
    url = f"http://127.0.0.1:{server.server_address[1]}/reward"
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server.reply = (200, b'{"cameras": []}')
    assert HTTPRewardClient(url, timeout_s=60).info() == {"cameras": []}
    assert HTTPRewardClient(url, token="other-token-0123456789", timeout_s=60).info()
    assert [s["Authorization"] for s in server.seen] == [
        f"Bearer {TOKEN}",
        "Bearer other-token-0123456789",
    ]
    for status, error in [(400, RewardRequestError), (401, RewardUnavailable)]:
        server.seen.clear()
        server.reply = (status, json.dumps({"error": "no"}).encode())
        client = HTTPRewardClient(url, timeout_s=60)
        with pytest.raises(error, match=f"HTTP {status}"):
            client.info()
        assert len(server.seen) == 1 and client.retried == 0


def test_a_200_that_is_not_json_is_a_clear_error(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/reward"
    for body in (b"<html>It works!</html>", b"[1, 2]", b"\xff\xfe"):
        server.reply = (200, body)
        with pytest.raises(RewardUnavailable, match="not its JSON answer") as caught:
            HTTPRewardClient(url, timeout_s=60).info()
        assert not isinstance(caught.value, ValueError)


def test_the_client_honours_its_url_scheme():
    for url in ("ftp://127.0.0.1/reward", "file:///tmp/x", "127.0.0.1:8000/reward", "http:///x"):
        with pytest.raises(ValueError, match="reward URL"):
            HTTPRewardClient(url)
    with socket.socket() as listener:  # https: the first bytes are a TLS handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(120)
        port = listener.getsockname()[1]
        first: list[bytes] = []

        def accept():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(120)
                first.append(conn.recv(5))

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        client = HTTPRewardClient(f"https://127.0.0.1:{port}/reward", retries=0, timeout_s=60)
        assert client.port == port
        with pytest.raises(RewardUnavailable):
            client.info()
        thread.join(timeout=120)
    assert first and first[0][:1] == b"\x16"  # a TLS record (handshake), not "GET /"
    assert HTTPRewardClient("https://example.invalid/reward").port == 443


# ----------------------------------------------------------------------------- serve-reward


@pytest.fixture
def corrupt_checkpoint(tmp_path):
    model = RewardClassifier(ClassifierConfig(cameras=CAMS[:1], image_size=32))
    checkpoint = Path(save_model(tmp_path / "ckpt", model))
    state = checkpoint / "state.pt"
    state.write_bytes(state.read_bytes()[:100])  # cut short
    return str(checkpoint)


def test_serve_reward_refuses_in_one_line(corrupt_checkpoint, capsys):
    with pytest.raises(DatasetError, match="state.pt: unreadable, the checkpoint is damaged"):
        check_checkpoint(corrupt_checkpoint)
    with pytest.raises(ValueError, match="state.pt: unreadable"):
        reward.build_app({"checkpoint": corrupt_checkpoint})
    assert reward.main([corrupt_checkpoint, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--host 0.0.0.0 is not loopback" in err[0]
    assert f"set {TOKEN_ENV}" in err[0] and "state.pt: unreadable" in err[1]


def test_serve_reward_options_are_checked(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match="threads 0: an integer >= 1"):
        RewardAppConfig("ckpt", threads=0).validate()
    with pytest.raises(ValueError, match="--host 'not-an-address': not an IP address"):
        ServeConfig(RewardAppConfig("ckpt"), host="not-an-address").validate()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError, match="cannot listen on 192.0.2.1"):
        port_free("192.0.2.1", port)  # TEST-NET: no address of this machine, not "in use"
    with pytest.raises(ValueError, match=f"require_token: no token; set {TOKEN_ENV}"):
        RewardAppConfig("ckpt", require_token=True).validate()
    with pytest.raises(ValueError, match="at least 16 printable"):
        RewardAppConfig("ckpt", token="short").validate()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    RewardAppConfig("ckpt", require_token=True).validate()
    assert RewardAppConfig("ckpt").with_token().token == TOKEN
    assert ServeConfig(RewardAppConfig("ckpt")).warnings() == []
    (warning,) = ServeConfig(RewardAppConfig("ckpt"), host="0.0.0.0").warnings()
    assert "requests must send its token" in warning
