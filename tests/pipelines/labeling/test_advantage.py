"""The Stage-0 labeling math against hand-computed cases and a per-frame oracle of the spec."""

import numpy as np
import pytest

from pipelines.labeling import advantage as adv

f32, f64 = np.float32, np.float64


# ----------------------------------------------------------------------------- rewards


def test_progress_reward_inside_episode_is_plain_difference():
    p = np.array([0.0, 0.1, 0.3, 0.6, 1.0], dtype=f32)
    r = adv.episode_rewards(p, chunk_size=2)
    assert r.dtype == f32
    # i + C < n for i = 0, 1, 2: p[i+2] - p[i] in float32
    assert r[0] == f32(0.3) - f32(0.0)
    assert r[1] == f32(0.6) - f32(0.1)
    assert r[2] == f32(1.0) - f32(0.3)
    # i = 3, 4: (p[4] - p[i]) / (n - i) * C, n - i = 2 and 1
    assert r[3] == f32(f64(f32(1.0) - f32(0.6)) / 2 * 2)
    assert r[4] == 0.0


def test_episode_shorter_than_chunk_uses_n_minus_i_denominator():
    p = np.array([0.0, 0.2, 0.5], dtype=f32)
    r = adv.episode_rewards(p, chunk_size=50)
    # every frame extrapolates: (0.5 - p[i]) / (3 - i) * 50
    assert r[0] == f32(0.5 / 3 * 50)  # 8.333333
    d = f64(f32(0.5) - f32(0.2))  # difference in float32 first: 0.30000001192...
    assert d == 0.30000001192092896
    assert r[1] == f32(d / 2 * 50)
    assert r[2] == 0.0
    # not n - 1 - i: that would give 0.5 / 2 * 50 = 12.5 for frame 0
    assert r[0] != f32(12.5)


def test_extrapolation_rounds_once_to_float32():
    # numpy 2 would divide and multiply in float32 (11.666667); numpy 1.x, and the spec,
    # in float64 with one rounding at the end (11.666666).
    p = np.array([0.0, 0.0, 0.35, 0.7], dtype=f32)
    r = adv.episode_rewards(p, chunk_size=50)
    assert r[1] == f32(11.666666)
    assert r[1] == f32(f64(f32(0.7)) / 3 * 50)
    assert r[1] != f32(0.7) / f32(3) * f32(50)


def test_one_frame_episode_gets_zero():
    assert adv.episode_rewards(np.array([0.42], dtype=f32), 50).tolist() == [0.0]
    assert adv.episode_rewards(np.zeros(0, dtype=f32), 50).tolist() == []


def test_float64_progress_difference_is_taken_in_float64():
    p = np.array([0.1, 0.30000001], dtype=f64)
    r = adv.episode_rewards(p, chunk_size=1)
    assert r[0] == f32(0.30000001 - 0.1)
    assert r[0] != f32(0.30000001) - f32(0.1)  # the float32 difference would differ


def test_advantage_sources_are_the_column_cast_to_float32():
    v = np.array([0.1, -0.25, 1e-10], dtype=f64)
    for source in ("absolute_advantage", "relative_advantage"):
        r = adv.episode_rewards(v, chunk_size=50, source=source)
        assert r.dtype == f32 and r.tolist() == v.astype(f32).tolist()


def test_segments_are_independent_episodes():
    a = np.array([0.0, 0.5, 1.0], dtype=f32)
    b = np.array([0.2, 0.1], dtype=f32)
    r = adv.segment_rewards(np.r_[a, b], np.array([3, 2]), chunk_size=1)
    assert r.tolist() == np.r_[adv.episode_rewards(a, 1), adv.episode_rewards(b, 1)].tolist()


# ----------------------------------------------------------------------------- stages


def test_stages_on_exact_boundaries():
    assert adv.frame_stages(np.array([0.0, 0.49, 0.5, 1.0], dtype=f32), 2).tolist() == [0, 0, 1, 1]
    # float32(1/3) = 0.3333333432... lies above 1/3: stage 1; float64 1/3 is exactly stage 1
    assert adv.frame_stages(np.array([1 / 3, 2 / 3], dtype=f32), 3).tolist() == [1, 2]
    assert adv.frame_stages(np.array([1 / 3], dtype=f64), 3).tolist() == [1]
    # 0.3 / 0.1 = 2.9999999999999996 in float64: stage 2, not 3
    assert adv.frame_stages(np.array([0.3], dtype=f64), 10).tolist() == [2]
    assert adv.frame_stages(np.array([1.0]), 10).tolist() == [9]
    assert adv.frame_stages(np.array([0.7, 0.1]), 1).tolist() == [0, 0]


# ----------------------------------------------------------------------------- percentiles


def test_percentile_matches_numpy_on_float64():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = np.round(rng.normal(size=int(rng.integers(1, 50))), int(rng.integers(1, 4)))
        ps = [0, 10, 30, 100 / 7 * 3, 50, 70, 99.9, 100]
        got = adv.percentiles_numpy1(np.sort(v), ps)
        assert got.tolist() == np.percentile(v, ps).tolist()


def test_percentile_of_float32_values_takes_the_difference_in_float32():
    v = np.array([-1e-8, 1.0], dtype=f32)
    # numpy 1.x: diff = float32(1.0 - -1e-8) = 1.0, so the median is 1.0 - 1.0 * 0.5 = 0.5
    assert adv.percentiles_numpy1(v, [50])[0] == 0.5
    # the same values as float64 interpolate the exact difference
    assert adv.percentiles_numpy1(v.astype(f64), [50])[0] == pytest.approx(0.499999995, abs=1e-12)
    assert adv.percentiles_numpy1(v.astype(f64), [50])[0] != 0.5


def test_percentile_hand_computed():
    s = np.array([0.0, 0.0, 1.0, 1.0, 2.0])
    # (n-1) * 0.3 = 1.2: between s[1] = 0 and s[2] = 1, gamma 0.2
    assert adv.percentiles_numpy1(s, [30])[0] == pytest.approx(0.2)
    assert adv.percentiles_numpy1(s, [50])[0] == 1.0
    assert adv.percentiles_numpy1(s, [100])[0] == 2.0
    assert adv.percentiles_numpy1(np.array([7.0]), [0, 30, 100]).tolist() == [7.0, 7.0, 7.0]


# ----------------------------------------------------------------------------- labels


def _binary(rewards, threshold, compare_float32=True):
    cuts = {0: adv.compute_cuts(np.sort(np.asarray(rewards, dtype=f64)), "binary", threshold, 10)}
    groups = np.zeros(len(rewards), dtype=np.int64)
    return cuts[0], adv.assign_labels(
        np.asarray(rewards, f32), groups, cuts, "binary", 10, compare_float32
    )


def test_binary_ties_at_the_threshold_are_positive():
    cut, labels = _binary([0.0, 0.0, 1.0, 1.0, 2.0], threshold=50)
    assert cut.values == (1.0,)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    cut, labels = _binary([0.0, 0.0, 1.0, 1.0, 2.0], threshold=70)
    assert cut.values[0] == pytest.approx(0.2)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    cut, labels = _binary([3.0, 1.0, 2.0, 4.0], threshold=25)  # 75th percentile = 3.25
    assert labels.tolist() == [0, 0, 0, 1]


def test_binary_comparison_precision_depends_on_stage_count():
    r = np.array([0.1], dtype=f32)
    t = f64(f32(0.1)) + 1e-12  # above the float32 value, but rounds back onto it
    cuts = {0: adv.Cuts((t,))}
    g = np.zeros(1, dtype=np.int64)
    assert adv.assign_labels(r, g, cuts, "binary", 10, compare_float32=True).tolist() == [1]
    assert adv.assign_labels(r, g, cuts, "binary", 10, compare_float32=False).tolist() == [0]


def test_n_slices_with_duplicate_boundaries():
    r = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], dtype=f64)
    cut = adv.compute_cuts(r, "n_slices", 70, 5)
    assert cut.values == pytest.approx((0.0, 0.0, 0.0, 0.4, 2.2))
    g = np.zeros(len(r), dtype=np.int64)
    labels = adv.assign_labels(r, g, {0: cut}, "n_slices", 5, compare_float32=True)
    assert labels.tolist() == [2, 2, 2, 2, 2, 2, 3, 3, 4, 4]


def test_n_slices_below_first_boundary_is_zero_and_top_is_last():
    cut = adv.Cuts((0.0, 1.0, 2.0))
    r = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 9.0], dtype=f32)
    g = np.zeros(len(r), dtype=np.int64)
    for f32cmp in (True, False):
        labels = adv.assign_labels(r, g, {0: cut}, "n_slices", 3, compare_float32=f32cmp)
        assert labels.tolist() == [0, 0, 0, 1, 2, 2]


def test_stages_have_their_own_cuts():
    r = np.array([0.0, 1.0, 2.0, 10.0, 20.0, 30.0], dtype=f32)
    stages = np.array([0, 0, 0, 1, 1, 1])
    cuts = {s: adv.compute_cuts(np.sort(r[stages == s]), "binary", 50, 10) for s in (0, 1)}
    assert cuts[0].values == (1.0,) and cuts[1].values == (20.0,)
    labels = adv.assign_labels(r, stages, cuts, "binary", 10, compare_float32=False)
    assert labels.tolist() == [0, 1, 1, 0, 1, 1]


def test_empty_stage_gets_reference_defaults():
    assert adv.compute_cuts(np.zeros(0, dtype=f32), "binary", 70, 10).values == (0.0,)
    assert adv.compute_cuts(np.zeros(0, dtype=f32), "n_slices", 70, 4).values == (0.0,) * 4


def test_top_frames_get_the_top_label():
    r = np.array([-5.0, -5.0, 5.0], dtype=f32)
    g = np.zeros(3, dtype=np.int64)
    top = np.array([True, False, False])
    cuts = {0: adv.Cuts((0.0,))}
    assert adv.assign_labels(r, g, cuts, "binary", 10, True, top).tolist() == [1, 0, 1]
    cuts = {0: adv.Cuts((0.0, 1.0, 2.0))}
    assert adv.assign_labels(r, g, cuts, "n_slices", 3, True, top).tolist() == [2, 0, 2]


# ----------------------------------------------------------------------------- oracle


def _oracle(episodes, spgs, chunk, source, K, disc, threshold, n_slices):
    """The spec read literally: per frame, Python scalars, numpy only for percentile."""
    rewards, stages = [], []
    for p, spg in zip(episodes, spgs, strict=True):
        n = len(p)
        for i in range(n):
            if source != "progress":
                r = f32(p[i])
            elif i + chunk < n:
                r = f32(p[i + chunk] - p[i])
            else:
                r = f32(f64(p[n - 1] - p[i]) / f64(n - i) * f64(chunk))
            rewards.append(r)
            stages.append(0 if K == 1 else min(int(f64(spg[i]) / (1.0 / K)), K - 1))
    cuts = {}
    for s in range(K):
        vals = [r for r, st in zip(rewards, stages, strict=True) if st == s]
        arr = np.sort(np.array(vals, dtype=f64 if K == 1 else f32))
        if not len(arr):
            cuts[s] = [0.0] if disc == "binary" else [0.0] * n_slices
        elif disc == "binary":
            cuts[s] = list(adv.percentiles_numpy1(arr, [100 - threshold]))
        else:
            cuts[s] = list(
                adv.percentiles_numpy1(arr, [100 / n_slices * j for j in range(n_slices)])
            )
    labels = []
    for r, s in zip(rewards, stages, strict=True):
        c = [f32(x) for x in cuts[s]] if K == 1 else [f64(x) for x in cuts[s]]
        rv = f32(r) if K == 1 else f64(r)
        if disc == "binary":
            labels.append(1 if rv >= c[0] else 0)
        else:
            lab = 0
            for j in range(len(c) - 1):
                if c[j] <= rv < c[j + 1]:
                    lab = j
                    break
            if rv >= c[-1]:
                lab = n_slices - 1
            labels.append(lab)
    return labels


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_labels_equal_the_per_frame_oracle(seed):
    rng = np.random.default_rng(seed)
    source = ["progress", "absolute_advantage"][seed % 2]
    K = [1, 2, 3][seed % 3]
    disc = ["binary", "n_slices"][(seed // 2) % 2]
    dtype = [f32, f64][(seed // 3) % 2]
    chunk = int(rng.choice([1, 5, 50]))
    threshold, n_slices = float(rng.choice([30, 70, 50])), int(rng.choice([3, 10]))
    episodes, spgs = [], []
    for _ in range(int(rng.integers(3, 12))):
        n = int(rng.integers(1, 80))
        p = np.round(np.cumsum(rng.normal(0.01, 0.03, n)) / 0.02) * 0.02  # ties
        episodes.append(p.astype(dtype))
        spgs.append(np.round(rng.uniform(0, 1, n) * 6) / 6)  # many on k/K boundaries
    want = _oracle(episodes, spgs, chunk, source, K, disc, threshold, n_slices)

    lengths = np.array([len(p) for p in episodes])
    rewards = adv.segment_rewards(np.concatenate(episodes), lengths, chunk, source)
    stages = adv.frame_stages(np.concatenate(spgs), K).astype(np.int64)
    vals = {s: rewards[stages == s].astype(f64 if K == 1 else f32) for s in range(K)}
    cuts = {s: adv.compute_cuts(np.sort(v), disc, threshold, n_slices) for s, v in vals.items()}
    got = adv.assign_labels(rewards, stages, cuts, disc, n_slices, compare_float32=K == 1)
    assert got.tolist() == want


def test_task_texts():
    assert adv.base_task("fold, Advantage: positive") == "fold"
    assert adv.base_task("fold, Advantage: 7") == "fold"
    assert adv.base_task("fold the cloth") == "fold the cloth"
    assert adv.labeled_task_texts(["a", "b"], "binary", 10) == [
        "a, Advantage: negative",
        "a, Advantage: positive",
        "b, Advantage: negative",
        "b, Advantage: positive",
    ]
    assert adv.labeled_task_texts(["a"], "n_slices", 3) == [
        "a, Advantage: 0",
        "a, Advantage: 1",
        "a, Advantage: 2",
    ]


def test_reward_statistics_keep_the_values_dtype():
    s = adv.reward_statistics(np.array([0.1, 0.2, 0.4], dtype=f32))
    assert s["mean"] == float(np.mean(np.array([0.1, 0.2, 0.4], dtype=f32)))
    assert list(s["percentiles"]) == list(range(0, 101, 10))
    assert adv.reward_statistics(np.zeros(0))["mean"] == 0.0
