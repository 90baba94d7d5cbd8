"""Speed of the reward classifier: serving latency, batching, overload, training (not a test).

* **Latency**: 4 simulated robots, each asking for a reward at 10 Hz (on its own fixed
  schedule, phases drawn at random) for `--duration` seconds, over HTTP (JSON with PNG images,
  as `serving.client.HTTPRewardClient` sends them; also a raw .npy body), both through Serve's
  proxy (`--port`) and to the replica directly (`--direct-port`, Serve's direct ingress), and
  through the DeploymentHandle; p50, p99 and max of the round trip as a robot sees it
  (encoding included), for each encoder (`small_convnet`, the default, and `resnet10`), two
  128 x 128 cameras. The endpoint is `flywheel serve-reward`'s default: one replica, one CPU
  and one torch thread, `--max-batch-size 8`, `--batch-wait-timeout-s 0.002`, plus
  `--direct-port`. Target: p99 <= 20 ms on this 2-core CPU.
* **Batching**: requests/s through the handle with 16 callers asking back to back, batched
  (`max_batch_size=8`) against `max_batch_size=1`; and batched over HTTP to the replica
  directly (`.npy`).
* **Overload**: an open loop over HTTP at twice the batched capacity for `--duration` s,
  through the proxy (twice the handle's) and then to the replica directly (twice its own):
  the share of 503s, latency of the answered requests, the replica's and the proxy's memory,
  and whether the endpoint answers afterwards.
* **Training**: samples/s of the classifier's training step (balanced batch of 32, random
  shift, forward, backward, AdamW) in one process with 2 torch threads, for each encoder.

Latency does not depend on the weights: the endpoint serves untrained checkpoints. It does
depend on what else runs on the machine: run it on a quiet machine for figures.

    python benchmarks/reward_benchmark.py [--duration 20] [--encoders small_convnet,resnet10]
        [--port 8000] [--direct-port 30000]

Writes benchmarks/results/reward.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray import serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.classifier.data import balanced_indices  # noqa: E402
from pipelines.classifier.model import ClassifierConfig, RewardClassifier, save_model  # noqa: E402
from pipelines.simulator import SO101Env  # noqa: E402
from pipelines.simulator.controllers import make_controller  # noqa: E402
from pipelines.vision.images import random_shift  # noqa: E402
from serving import (  # noqa: E402
    APP_NAME,
    HandleRewardClient,
    HTTPRewardClient,
    RewardAppConfig,
    ServeConfig,
    direct_urls,
    serve_reward,
)
from serving.request_body import json_body  # noqa: E402

CAMS = ["observation.images.front", "observation.images.wrist"]
SIZE = 128


def sim_frames(count: int = 20) -> list[dict]:
    """Camera frames of a simulated reach-and-grasp episode (realistic PNG sizes)."""
    env = SO101Env("reach_grasp", image_size=SIZE)
    policy = make_controller("expert", env, seed=1)
    obs, info = env.reset(seed=1)
    frames = []
    for _ in range(count):
        frames.append({k: obs[k] for k in CAMS})
        obs, _, done, _, info = env.step(policy(obs, info))
        if done:
            obs, info = env.reset(seed=len(frames))
    return frames


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    if not len(a):
        return {"count": 0}
    return {
        "count": int(len(a)),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def robots(make_client, frames, count=4, hz=10.0, duration=20.0) -> dict:
    """`count` robots, each asking at `hz` on its own schedule; latencies in ms."""
    latencies, errors, lock = [], [], threading.Lock()
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 1 / hz, count)
    start = time.monotonic() + 0.5

    def robot(i):
        client = make_client()
        k = 0
        while True:
            due = start + phases[i] + k / hz
            if due > start + duration:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            t = time.perf_counter()
            try:
                client.score(frames[k % len(frames)])
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)
            except Exception as e:  # counted
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            k += 1

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {**percentiles(latencies), "errors": len(errors), "robots": count, "hz": hz}


def closed_loop(make_client, frames, callers=16, duration=10.0) -> float:
    """Requests/s with `callers` threads asking back to back, each with its own client."""
    done, stop = [0] * callers, threading.Event()

    def caller(i):
        client = make_client()
        while not stop.is_set():
            client.score(frames[done[i] % len(frames)])
            done[i] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm-up, not counted
    n0, t0 = sum(done), time.monotonic()
    time.sleep(duration)
    rate = (sum(done) - n0) / (time.monotonic() - t0)
    stop.set()
    for t in threads:
        t.join()
    return rate


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def serve_pids() -> dict:
    pids = {}
    for a in ray.util.list_named_actors(all_namespaces=True):
        name = a["name"]
        if name.startswith(("SERVE_REPLICA::", "SERVE_PROXY_ACTOR")):
            actor = ray.get_actor(name, namespace="serve")
            pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
            pids["proxy" if name.startswith("SERVE_PROXY") else "replica"] = pid
    return pids


def open_loop(url: str, frames, rate: float, duration: float) -> dict:
    """Requests at `rate`/s over HTTP whatever the answers (aiohttp); statuses and latencies."""
    import aiohttp

    bodies = [json_body(f) for f in frames]
    statuses, latencies = {}, []
    pids = serve_pids()
    memory = {k: [rss_mb(p)] for k, p in pids.items()}

    async def one(session, body):
        t = time.perf_counter()
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()
                status = r.status
        except Exception as e:  # counted by kind
            status = type(e).__name__
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append((time.perf_counter() - t) * 1000)

    async def main():
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks, start, k = [], time.monotonic(), 0
            next_sample = start
            while time.monotonic() - start < duration:
                due = start + k / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(one(session, bodies[k % len(bodies)])))
                k += 1
                if time.monotonic() >= next_sample:
                    for name, pid in pids.items():
                        memory[name].append(rss_mb(pid))
                    next_sample += 1.0
            offered = k / (time.monotonic() - start)
            await asyncio.gather(*tasks)
            return offered, k

    offered, sent = asyncio.run(main())
    after = HTTPRewardClient(url, retries=0).score(frames[0])
    for name, pid in pids.items():
        memory[name].append(rss_mb(pid))
    return {
        "target_rate": round(rate, 1),
        "offered_rate": round(offered, 1),
        "sent": sent,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "share_503": round(statuses.get(503, 0) / max(sent, 1), 3),
        "answered": percentiles(latencies),
        "rss_mb": {
            k: {"start": round(v[0], 1), "max": round(max(v), 1), "end": round(v[-1], 1)}
            for k, v in memory.items()
        },
        "serves_afterwards": bool(after.get("model")),
    }


def train_speed(encoder: str, steps: int = 20, batch: int = 32) -> float:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (256, 2, SIZE, SIZE, 3), dtype=np.uint8)
    labels = (np.arange(256) % 3 == 0).astype(np.uint8)
    model = RewardClassifier(ClassifierConfig(cameras=CAMS, image_size=SIZE, encoder=encoder))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        idx = balanced_indices(labels, batch, rng)
        x = torch.from_numpy(random_shift(images[idx], 4, rng))
        loss = loss_fn(model(x), torch.from_numpy(labels[idx].astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    p.add_argument("--encoders", default="small_convnet,resnet10")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--direct-port", type=int, default=30000)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reward.json"))
    args = p.parse_args()
    frames = sim_frames()
    url = f"http://127.0.0.1:{args.port}/reward"

    def start(checkpoint, **options):  # serve_reward starts Ray, with direct ingress, at first
        app = RewardAppConfig(checkpoint, **options)
        cfg = ServeConfig(app, port=args.port, direct_port=args.direct_port)
        handle = serve_reward(cfg)
        return handle, direct_urls(cfg)[0]

    results = {
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "duration_s": args.duration,
        "latency": {},
        "training_samples_per_s": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for encoder in args.encoders.split(","):
            torch.manual_seed(0)
            model = RewardClassifier(
                ClassifierConfig(cameras=CAMS, image_size=SIZE, encoder=encoder)
            )
            checkpoint = save_model(Path(tmp) / encoder, model, name=f"untrained-{encoder}")
            handle, direct = start(checkpoint)
            for c in (HTTPRewardClient(url), HTTPRewardClient(direct), HandleRewardClient(handle)):
                for f in frames:  # warm up
                    c.score(f)
            lat = {}
            for name, at in (("http", url), ("direct_http", direct)):
                lat[f"{name}_json_png"] = robots(
                    lambda at=at: HTTPRewardClient(at), frames, duration=args.duration
                )
                lat[f"{name}_npy"] = robots(
                    lambda at=at: HTTPRewardClient(at, body="npy", cameras=CAMS),
                    frames,
                    duration=args.duration,
                )
            lat.update(
                {
                    "handle": robots(
                        lambda h=handle: HandleRewardClient(h), frames, duration=args.duration
                    ),
                }
            )
            results["latency"][encoder] = lat
            print(encoder, json.dumps(lat), flush=True)
            if encoder == "small_convnet":
                batched = closed_loop(
                    lambda h=handle: HandleRewardClient(h), frames, duration=args.duration / 2
                )
                start(checkpoint, max_batch_size=1)
                single = closed_loop(
                    lambda: HandleRewardClient(serve.get_app_handle(APP_NAME)),
                    frames,
                    duration=args.duration / 2,
                )
                results["batching"] = {
                    "callers": 16,
                    "batched_max_batch_size_8_rps": round(batched, 1),
                    "max_batch_size_1_rps": round(single, 1),
                    "speedup": round(batched / single, 2),
                }
                print("batching", results["batching"], flush=True)
                _, direct = start(checkpoint)
                results["overload"] = open_loop(url, frames, 2 * batched, args.duration)
                print("overload", results["overload"], flush=True)
                direct_rps = closed_loop(
                    lambda at=direct: HTTPRewardClient(at, body="npy", cameras=CAMS),
                    frames,
                    duration=args.duration / 2,
                )
                results["batching"]["direct_http_npy_rps"] = round(direct_rps, 1)
                results["overload_direct"] = open_loop(
                    direct, frames, 2 * direct_rps, args.duration
                )
                print("overload_direct", results["overload_direct"], flush=True)
            serve.delete(APP_NAME)
        serve.shutdown()
        ray.shutdown()
        for encoder in args.encoders.split(","):
            results["training_samples_per_s"][encoder] = round(
                train_speed(encoder, args.train_steps), 1
            )
        print("training", results["training_samples_per_s"], flush=True)
    results["machine"] += f", {os.getloadavg()[0]:.1f} at the end"
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
