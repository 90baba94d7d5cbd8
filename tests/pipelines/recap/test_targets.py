"""RECAP's value targets against hand-computed cases (pipelines.recap.targets)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.recap import MissingOutcomeError, episode_targets, value_targets
from pipelines.recap.targets import task_max_lengths


def test_a_successful_episode_of_the_longest_length():
    # T = 3 = T_max, c_fail = 3: g = -2, -1, 0 over T_max + c_fail = 6
    np.testing.assert_allclose(episode_targets(3, True, 3), [-2 / 6, -1 / 6, 0.0])


def test_a_failed_episode_is_penalized_by_c_fail():
    # T = 2, T_max = 3, c_fail = 3: g = -1 - 3, 0 - 3 over 6
    np.testing.assert_allclose(episode_targets(2, False, 3), [-4 / 6, -3 / 6])


def test_c_fail_coef_scales_the_penalty():
    # c_fail = 0.5 * 4 = 2, denominator 6: T = 4 failed: g = -3-2, -2-2, -1-2, 0-2
    np.testing.assert_allclose(
        episode_targets(4, False, 4, c_fail_coef=0.5), [-5 / 6, -4 / 6, -3 / 6, -2 / 6]
    )
    # no penalty: failure and success alike, over T_max alone
    np.testing.assert_allclose(episode_targets(3, False, 3, 0.0), [-2 / 3, -1 / 3, 0.0])
    np.testing.assert_allclose(episode_targets(3, True, 3, 0.0), [-2 / 3, -1 / 3, 0.0])


def test_every_target_lies_in_minus_one_to_zero():
    for t_max in (1, 2, 7, 50):
        for n in range(1, t_max + 1):
            for success in (True, False):
                for coef in (0.0, 1.0, 5.0):
                    y = episode_targets(n, success, t_max, coef)
                    assert y.shape == (n,) and y.min() >= -1 and y.max() <= 0
                    assert y[-1] == (0.0 if success or coef == 0 else -coef / (1 + coef))


def test_t_max_is_per_task():
    lengths, tasks = [2, 4, 3], ["a", "a", "b"]
    assert task_max_lengths(lengths, tasks) == {"a": 4, "b": 3}
    a_short, a_long, b = value_targets(lengths, tasks, [True, False, True])
    # task a: T_max 4, c_fail 4, denominator 8
    np.testing.assert_allclose(a_short, [-1 / 8, 0.0])
    np.testing.assert_allclose(a_long, [-7 / 8, -6 / 8, -5 / 8, -4 / 8])
    # task b: T_max 3, denominator 6
    np.testing.assert_allclose(b, [-2 / 6, -1 / 6, 0.0])


def test_episodes_without_an_outcome_are_refused_naming_the_command():
    with pytest.raises(MissingOutcomeError) as e:
        value_targets([2, 3], ["a", "a"], [True, None], episodes=[4, 9], dataset="ds")
    msg = str(e.value)
    assert "\n" not in msg and "episodes 9" in msg
    assert "flywheel outcomes ds --from" in msg


def test_default_outcome_failure_takes_them_as_failures():
    _, missing = value_targets([2, 3], ["a", "a"], [True, None], default_outcome="failure")
    np.testing.assert_allclose(missing, episode_targets(3, False, 3))


@pytest.mark.parametrize(
    "kwargs",
    [{"c_fail_coef": -1.0}, {"c_fail_coef": float("nan")}, {"default_outcome": "success?"}],
)
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        value_targets([2], ["a"], [True], **kwargs)


def test_bad_lengths():
    with pytest.raises(ValueError):
        value_targets([0], ["a"], [True])
    with pytest.raises(ValueError):
        value_targets([2, 3], ["a"], [True, True])
    with pytest.raises(ValueError):
        episode_targets(5, True, 4)
