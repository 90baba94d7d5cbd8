"""ActionSelector: propensities are the selection frequencies; exact resampling after undo."""

import numpy as np
import pytest

from pipelines.selection.selector import (
    ActionSelector,
    PolicyDistanceScorer,
    SelectorError,
    conditional_probabilities,
)

CANDIDATES = np.arange(12, dtype=np.float32).reshape(4, 3)
SCORES = np.array([2.0, 0.5, -1.0, 1.0])
DRAWS = 6000


def scorer(state, candidates):
    return SCORES[: len(candidates)]


def frequencies(selector, excluded=()):
    counts = np.zeros(len(CANDIDATES))
    props = np.zeros(len(CANDIDATES))
    for _ in range(DRAWS):
        sel = selector.select(CANDIDATES, None, excluded)
        counts[sel.index] += 1
        props[sel.index] = sel.propensity
        assert np.array_equal(sel.action, CANDIDATES[sel.index])
        assert sel.propensity == pytest.approx(sel.probabilities[sel.index])
    return counts / DRAWS, props


def assert_matches(freq, probs):
    # 5 binomial standard deviations; the draws are seeded, so the test is deterministic.
    sigma = np.sqrt(probs * (1 - probs) / DRAWS)
    assert np.all(np.abs(freq - probs) <= 5 * sigma + 1e-12), (freq, probs)


@pytest.mark.parametrize(
    "mode,kwargs",
    [
        ("random", {}),
        ("epsilon_greedy", {"epsilon": 0.3, "scorer": scorer}),
        ("learned", {"temperature": 0.7, "scorer": scorer}),
    ],
)
@pytest.mark.parametrize("excluded", [(), (0,), (0, 3)])
def test_propensities_are_the_empirical_frequencies(mode, kwargs, excluded):
    selector = ActionSelector(mode, seed=7, **kwargs)
    p, cond = selector.probabilities(CANDIDATES, None, excluded)
    assert cond.sum() == pytest.approx(1.0)
    assert np.all(cond[list(excluded)] == 0)
    freq, props = frequencies(selector, excluded)
    assert_matches(freq, cond)
    drawn = freq > 0
    assert np.allclose(props[drawn], cond[drawn])
    if excluded:  # P(a | excluded) = p(a) / (1 - sum p(excluded))
        keep = [i for i in range(4) if i not in excluded]
        assert np.allclose(cond[keep], p[keep] / (1 - p[list(excluded)].sum()))


def test_the_rules_formulas():
    n = len(CANDIDATES)
    random = ActionSelector("random", seed=0)
    _, cond = random.probabilities(CANDIDATES, None, (1, 2))
    assert np.allclose(cond[[0, 3]], 1 / (n - 2))
    learned = np.exp(SCORES / 0.5) / np.exp(SCORES / 0.5).sum()
    eps = ActionSelector("epsilon_greedy", epsilon=0.2, temperature=0.5, scorer=scorer, seed=0)
    p, _ = eps.probabilities(CANDIDATES)
    assert np.allclose(p, 0.2 / n + 0.8 * learned)
    lrn = ActionSelector("learned", temperature=0.5, scorer=scorer, seed=0)
    p, cond = lrn.probabilities(CANDIDATES, None, (0,))
    assert np.allclose(p, learned)
    assert np.allclose(cond, conditional_probabilities(learned, (0,)))


def test_sequential_resampling_gives_each_order_its_product_probability():
    """Draw, reject, redraw: the frequency of each (first, second) pair is p1 * p2|first."""
    selector = ActionSelector("epsilon_greedy", epsilon=0.4, scorer=scorer, seed=3)
    p, _ = selector.probabilities(CANDIDATES)
    pairs = np.zeros((4, 4))
    logged = {}
    for _ in range(DRAWS):
        first = selector.select(CANDIDATES)
        second = selector.select(CANDIDATES, None, [first.index])
        pairs[first.index, second.index] += 1
        logged[(first.index, second.index)] = first.propensity * second.propensity
        assert second.metadata["resampled"] and second.metadata["num_already_executed"] == 1
    expected = p[:, None] * p[None, :] / (1 - p[:, None])
    np.fill_diagonal(expected, 0.0)
    assert expected.sum() == pytest.approx(1.0)
    assert_matches(pairs.reshape(-1) / DRAWS, expected.reshape(-1))
    for (a, b), prop in logged.items():
        assert prop == pytest.approx(expected[a, b])


def test_metadata_and_bad_requests():
    selector = ActionSelector("epsilon_greedy", epsilon=0.1, scorer=scorer, seed=0)
    sel = selector.select(CANDIDATES)
    meta = sel.metadata
    assert meta["selector_mode"] == "epsilon_greedy" and meta["epsilon"] == 0.1
    assert meta["num_candidate_actions"] == 4 and not meta["resampled"]
    assert sum(meta["candidate_propensities"]) == pytest.approx(1.0)
    with pytest.raises(SelectorError, match="unknown selector mode 'greedy'"):
        ActionSelector("greedy")
    with pytest.raises(SelectorError, match="needs a scorer"):
        ActionSelector("learned")
    with pytest.raises(SelectorError, match="epsilon"):
        ActionSelector("epsilon_greedy", epsilon=1.5, scorer=scorer)
    with pytest.raises(SelectorError, match="already executed"):
        selector.select(CANDIDATES, None, [0, 1, 2, 3])


def test_learned_conditionals_stay_exact_when_the_excluded_held_all_the_mass():
    sharp = ActionSelector("learned", temperature=1e-3, scorer=scorer, seed=0)
    _, cond = sharp.probabilities(CANDIDATES, None, (0,))
    assert cond.sum() == pytest.approx(1.0) and cond[3] > 0.99


def test_policy_distance_scorer_prefers_the_nearest_candidate():
    score = PolicyDistanceScorer(lambda state: CANDIDATES[2] + 0.1, scale=1.0)
    selector = ActionSelector("learned", temperature=0.5, scorer=score, seed=0)
    p, _ = selector.probabilities(CANDIDATES)
    assert int(np.argmax(p)) == 2
