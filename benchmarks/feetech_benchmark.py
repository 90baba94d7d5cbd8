"""Benchmark of the Feetech bus against the STS3215 emulator (not a test).

Measures, with the unmodified scservo_sdk client talking to a 6-servo emulator on a pty:

* round trips: one SYNC_READ of Present_Position (6 servos) and one SYNC_WRITE of
  Goal_Position, `--iterations` times each (p50, p99, max);
* a control loop at `--hz` (30) for `--seconds` (20): each tick sync-reads the positions and
  sync-writes new goals (a slow sine around the middle), ticks scheduled on an absolute time grid
  (sleep until the next deadline; a late tick runs at once, whole periods behind are skipped:
  no drift accumulates). Reports the
  achieved rate and the period jitter |actual period - 1/hz| (p50, p99, max);
* the same loop with empty ticks first (`--baseline-seconds`, 10): the jitter the machine's
  scheduler alone causes, to tell it apart from the bus's.

The emulator runs in a thread of this process (as in the tests: it shares the GIL with the
client) or, with `--emulator process`, in a child process (like real servos, which cost no
host CPU).

    python benchmarks/feetech_benchmark.py [--seconds 20] [--iterations 2000] [--emulator thread]

Prints a table and writes benchmarks/results/feetech.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.feetech.bus import SO101_MOTORS, FeetechBus  # noqa: E402
from actors.feetech.emulator import STS3215Emulator  # noqa: E402


@contextlib.contextmanager
def emulated_bus(mode: str) -> Iterator[str]:
    """Yield the pty path of a 6-servo emulator running as a thread or a child process."""
    if mode == "thread":
        with STS3215Emulator(range(1, 7)) as emulator:
            yield emulator.port
        return
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-m", "actors.feetech.emulator", "--buses", "follower"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        line = child.stdout.readline()  # "follower: /dev/pts/N"
        yield line.split(": ", 1)[1].strip()
    finally:
        child.terminate()
        child.wait(timeout=10)


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "max_ms": round(float(values.max()), 3),
    }


def round_trips(bus: FeetechBus, iterations: int) -> dict[str, dict[str, float]]:
    """Time `iterations` sync reads of Present_Position and sync writes of Goal_Position."""
    goals = dict.fromkeys(bus.motors, 2047)
    reads, writes = [], []
    for _ in range(iterations):
        start = time.perf_counter()
        bus.sync_read("Present_Position")
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        bus.sync_write("Goal_Position", goals)
        writes.append(time.perf_counter() - start)
    return {"sync_read": percentiles_ms(reads), "sync_write": percentiles_ms(writes)}


def control_loop(bus: FeetechBus | None, hz: float, seconds: float) -> dict[str, object]:
    """Read positions and write goals every 1/hz s on an absolute grid; return timing stats.

    Without a bus the ticks do nothing: the scheduler's own jitter, for comparison.
    """
    period = 1.0 / hz
    starts: list[float] = []
    work: list[float] = []
    skipped = 0
    t0 = time.perf_counter()
    tick = 0
    while True:
        deadline = t0 + tick * period
        if deadline - t0 >= seconds:
            break
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        start = time.perf_counter()
        starts.append(start)
        if bus is not None:
            positions = bus.sync_read("Present_Position")
            phase = 2 * math.pi * 0.5 * (start - t0)
            goals = {name: 2047 + round(400 * math.sin(phase)) for name in positions}
            bus.sync_write("Goal_Position", goals)
        work.append(time.perf_counter() - start)
        tick += 1
        behind = int((time.perf_counter() - (t0 + tick * period)) // period)
        if behind >= 1:  # a whole period or more behind: skip those slots, keep the grid
            skipped += behind
            tick += behind
    periods = np.diff(starts)
    jitter = np.abs(periods - period)
    return {
        "hz_target": hz,
        "seconds": round(starts[-1] - starts[0], 3),
        "ticks": len(starts),
        "hz_achieved": round((len(starts) - 1) / (starts[-1] - starts[0]), 3),
        "skipped_slots": skipped,
        "period_jitter": percentiles_ms(list(jitter)),
        "tick_work": percentiles_ms(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--emulator", choices=("thread", "process"), default="thread")
    parser.add_argument(
        "--baseline-seconds", type=float, default=10.0, help="empty-tick loop first (0: skip)"
    )
    args = parser.parse_args()

    baseline = control_loop(None, args.hz, args.baseline_seconds) if args.baseline_seconds else None

    with emulated_bus(args.emulator) as port, FeetechBus(port, SO101_MOTORS) as bus:
        bus.enable_torque()
        trips = round_trips(bus, args.iterations)
        loop = control_loop(bus, args.hz, args.seconds)
        retries = bus.retry_count
        bus.disable_torque()

    result = {
        "emulator": args.emulator,
        "cpus": os.cpu_count(),
        "servos": len(SO101_MOTORS),
        "iterations": args.iterations,
        "round_trip": trips,
        "control_loop": loop,
        "baseline_loop_without_bus": baseline,
        "bus_retries": retries,
    }
    print(f"Feetech bus vs emulator ({args.emulator}), {os.cpu_count()} CPUs")
    print(f"{'measure':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = [
        (f"sync read Present_Position x{len(SO101_MOTORS)}", trips["sync_read"]),
        ("sync write Goal_Position", trips["sync_write"]),
        (f"{args.hz:g} Hz loop: period jitter", loop["period_jitter"]),
        (f"{args.hz:g} Hz loop: tick work", loop["tick_work"]),
    ]
    if baseline is not None:
        rows.append((f"{args.hz:g} Hz empty loop: jitter", baseline["period_jitter"]))
    for label, stats in rows:
        print(f"{label:<34}{stats['p50_ms']:>9.3f}{stats['p99_ms']:>9.3f}{stats['max_ms']:>9.3f}")
    print(
        f"loop: {loop['ticks']} ticks in {loop['seconds']} s = {loop['hz_achieved']} Hz, "
        f"{loop['skipped_slots']} skipped slots, {retries} bus retries"
    )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "feetech.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
