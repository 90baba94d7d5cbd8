"""Replay buffers: n-step targets, frame stacks, the ring, durable segments."""

import numpy as np
import pytest

from pipelines.dataset import DatasetError
from pipelines.rl.replay import Episode, ReplayBuffer, nstep_targets, remove_unlisted_segments

SPEC = {"observation.state": ((2,), "float32"), "features": ((3,), "float16")}


def episode(t, terminated, start=0.0, interv=None, demo=False, reward=None):
    obs = {
        "observation.state": np.stack([[start + i, 0.0] for i in range(t + 1)]).astype(np.float32),
        "features": np.full((t + 1, 3), start, np.float16),
    }
    r = np.zeros(t, np.float32) if reward is None else np.asarray(reward, np.float32)
    if reward is None and terminated:
        r[-1] = 1.0
    return Episode(
        obs=obs,
        action=np.tile(np.arange(t, dtype=np.float32)[:, None], (1, 4)) / 100,
        reward=r,
        terminated=terminated,
        intervention=np.zeros(t, bool) if interv is None else np.asarray(interv),
        demo=np.full(t, demo),
        info={},
    )


def brute_force(rewards, terminated, i, n, gamma):
    """Reference n-step target for step i of one episode (list of rewards)."""
    t = len(rewards)
    ret, k = 0.0, 0
    while k < n and i + k < t:
        ret += gamma**k * rewards[i + k]
        k += 1
        if terminated and i + k == t:
            return ret, 0.0, i + k
    return ret, gamma**k, i + k


@pytest.mark.parametrize("terminated", [True, False])
def test_nstep_targets_match_a_brute_force_reference(terminated):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(100, SPEC, 4)
    rewards = rng.random(7).round(2)
    buf.add(episode(7, terminated, reward=rewards))
    buf.add(episode(4, True, start=50.0))
    for n in (1, 3, 5):
        ret, disc, nxt = nstep_targets(buf.reward, buf.terminal, buf.last, np.arange(7), n, 0.9)
        for i in range(7):
            want = brute_force(list(rewards), terminated, i, n, 0.9)
            assert ret[i] == pytest.approx(want[0], rel=1e-5)
            assert disc[i] == pytest.approx(want[1], rel=1e-6)
            assert nxt[i] == want[2]  # frame index; the episode starts at frame 0


def test_a_terminal_stops_the_bootstrap_and_a_truncation_bootstraps_from_the_final_frame():
    buf = ReplayBuffer(50, SPEC, 4)
    buf.add(episode(3, terminated=True))  # frames 0..3, frame 3 final
    buf.add(episode(3, terminated=False, start=10.0))  # frames 4..7
    batch_idx = np.array([2, 6])
    ret, disc, nxt = nstep_targets(buf.reward, buf.terminal, buf.last, batch_idx, 3, 0.99)
    assert ret[0] == pytest.approx(1.0) and disc[0] == 0.0
    assert disc[1] == pytest.approx(0.99) and nxt[1] == 7  # one step to the final observation
    assert buf.obs["observation.state"][7, 0] == 13.0  # next state is the next frame


def test_no_observation_is_stored_twice_and_final_frames_start_nothing():
    buf = ReplayBuffer(100, SPEC, 4)
    buf.add(episode(5, True))
    buf.add(episode(6, False, start=20))
    assert buf.total == 5 + 1 + 6 + 1 and len(buf) == 11
    idx = buf.sample_indices(2000, np.random.default_rng(1))
    assert not buf.last[idx].any() and set(idx) == set(range(13)) - {5, 12}


def test_frame_stack_repeats_the_first_frame_and_never_crosses_episodes():
    buf = ReplayBuffer(100, SPEC, 4, frame_stack=3)
    buf.add(episode(4, True, start=0))
    buf.add(episode(4, True, start=100))
    stacked = buf.stacked(np.array([0, 1, 3, 5, 7]))["observation.state"][:, :, 0]
    assert stacked.tolist() == [[0, 0, 0], [0, 0, 1], [1, 2, 3], [100, 100, 100], [100, 101, 102]]


def test_the_ring_overwrites_the_oldest_frames_and_look_aheads_stay_inside_episodes():
    buf = ReplayBuffer(20, SPEC, 4, frame_stack=2)
    rng = np.random.default_rng(0)
    starts = []
    for k in range(12):
        starts.append(100.0 * k)
        buf.add(episode(int(rng.integers(2, 7)), bool(k % 2), start=100.0 * k))
    assert buf.frames == 20
    batch = buf.sample(500, rng, nstep=3, gamma=0.99)
    s = batch["obs"]["observation.state"][:, -1, 0]
    nxt = batch["next_obs"]["observation.state"][:, -1, 0]
    prev = batch["obs"]["observation.state"][:, 0, 0]
    # the next state belongs to the same episode (same hundred), 1-3 frames later
    assert np.all(np.floor(nxt / 100) == np.floor(s / 100))
    assert np.all((nxt - s >= 1) & (nxt - s <= 3))
    assert np.all(np.floor(prev / 100) == np.floor(s / 100)) and np.all(s - prev <= 1)


def test_segments_rebuild_the_ring_exactly(tmp_path):
    rng = np.random.default_rng(3)
    buf = ReplayBuffer(30, SPEC, 4, frame_stack=2)
    manifests = []
    for k in range(16):
        buf.add(episode(int(rng.integers(2, 6)), bool(k % 2), start=10.0 * k))
        if k % 2:
            manifests.append(buf.save_segment(tmp_path))
    buf.add(episode(3, False, start=500.0))
    manifest = buf.save_segment(tmp_path)
    written = len(manifests) + 1
    again = ReplayBuffer(30, SPEC, 4, frame_stack=2)
    again.load(tmp_path, manifest)
    for name in ("action", "reward", "terminal", "last", "pos", "episode"):
        assert np.array_equal(getattr(again, name), getattr(buf, name)), name
    for k in SPEC:
        assert np.array_equal(again.obs[k], buf.obs[k])
    assert again.total == buf.total and len(again) == len(buf)
    # segments no longer holding live frames are dropped from the manifest, then deleted
    assert len(manifest["segments"]) < written
    removed = remove_unlisted_segments(tmp_path, [manifest])
    assert removed >= 1 and len(list(tmp_path.glob("segment_*.npz"))) == len(manifest["segments"])
    again.load(tmp_path, manifest)  # still loads from what is kept
    with pytest.raises(DatasetError, match="capacity"):
        ReplayBuffer(31, SPEC, 4).load(tmp_path, manifest)


def test_uint8_images_cost_what_they_weigh():
    spec = {
        "observation.images.front": ((64, 64, 3), "uint8"),
        "observation.state": ((6,), "float32"),
    }
    buf = ReplayBuffer(1000, spec, 4)
    per_frame = buf.bytes_per_frame()
    assert 64 * 64 * 3 + 24 <= per_frame <= 64 * 64 * 3 + 24 + 64


def test_frame_nbytes_is_what_a_buffer_allocates():
    from pipelines.rl.replay import frame_nbytes

    for spec in (SPEC, {"observation.images.front": ((128, 128, 3), "uint8"),
                        "features": ((64,), "float16")}):  # fmt: skip
        assert frame_nbytes(spec, 4) == ReplayBuffer(100, spec, 4).bytes_per_frame()
