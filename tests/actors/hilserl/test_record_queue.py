"""A collector's episodes on their way to the recorder: bounded in flight, failures raised."""

import os
import time

import pytest

from actors.hilserl.collector import RecordQueue

pytestmark = pytest.mark.usefixtures("ray_cluster")


def gate_actor(ray):
    @ray.remote(num_cpus=0)
    class Gate:
        """A recorder that writes nothing until `path` exists."""

        def __init__(self, path):
            self.path = path
            self.calls = 0

        def record(self, episodes):
            self.calls += 1
            deadline = time.monotonic() + 600
            while not os.path.exists(self.path) and time.monotonic() < deadline:
                time.sleep(0.05)
            return self.calls

        def count(self):
            return self.calls

    return Gate


def test_a_slow_recorder_holds_the_collector_back(tmp_path, ray_cluster):
    ray = ray_cluster
    go = tmp_path / "go"
    gate = gate_actor(ray).remote(str(go))
    try:
        queue = RecordQueue(gate, limit=2, timeout_s=1)
        queue.send(ray.put("episode 1"))
        queue.send(ray.put("episode 2"))  # two in flight: the bound
        with pytest.raises(RuntimeError, match="the recorder wrote no episode in 1 s"):
            queue.send(ray.put("episode 3"))  # waits for one to be written; none is
        assert len(queue.pending) == 2  # the third was never sent
        go.write_text("")
        queue.timeout_s = 600
        queue.flush()
        assert queue.pending == [] and ray.get(gate.count.remote()) == 2
    finally:
        go.write_text("")
        ray.kill(gate)


def test_a_failed_recording_is_raised_not_lost(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0)
    class Broken:
        def record(self, episodes):
            raise OSError("No space left on device")

    broken = Broken.remote()
    try:
        queue = RecordQueue(broken, timeout_s=600)
        queue.send(ray.put("episode"))
        with pytest.raises(RuntimeError, match="the recorder failed: .*No space left on device"):
            queue.flush()
    finally:
        ray.kill(broken)
