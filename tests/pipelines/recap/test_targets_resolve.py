"""`resolve_outcomes`: the outcome each episode is taken with (training and estimation alike)."""

import pytest

from pipelines.recap.targets import MissingOutcomeError, resolve_outcomes


def test_outcomes_are_taken_as_given_or_as_failures_by_default():
    assert resolve_outcomes([True, False, True]) == [True, False, True]
    assert resolve_outcomes([True, None, False], "failure") == [True, False, False]
    with pytest.raises(MissingOutcomeError) as e:
        resolve_outcomes([True, None, None], episodes=[4, 7, 9], dataset="/data/rec")
    message = str(e.value)
    assert "/data/rec: 2 episode(s) without an outcome (episode_success; episodes 7, 9)" in message
    assert "flywheel outcomes /data/rec --from" in message
    assert "--default-outcome failure" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="default_outcome 'success'"):
        resolve_outcomes([None], "success")
