"""TeleopSession's controls: each belongs to the episode it was given in (no Ray needed)."""

from actors.teleop import FAILURE, STOP, SUCCESS, TeleopSession


def session_without_arms() -> TeleopSession:
    return TeleopSession(follower=None, leader=None, cameras={}, recorder=None)


def test_a_late_control_never_ends_the_next_episode():
    session = session_without_arms()
    session._begin_attempt()  # episode 1 starts (what record_episode does)
    first = session.attempt
    session.success()  # pressed as episode 1 hit its time limit: still pending when ...
    session._begin_attempt()  # ... episode 2 starts, so it is dropped
    assert session.attempt == first + 1
    assert session._take_event() is None
    session.success(attempt=first)  # a judge's late verdict about episode 1: ignored
    assert session._take_event() is None
    session.success(attempt=session.attempt)  # a verdict about this episode counts
    session.failure()  # the first control of an episode wins, stop excepted
    assert session._take_event() == SUCCESS
    session.failure(attempt=session.attempt)
    assert session._take_event() == FAILURE


def test_stop_carries_over_and_ends_the_session_before_another_episode():
    session = session_without_arms()
    session._begin_attempt()
    session.success()
    session.stop()  # overrides the pending success
    assert session._take_event() == STOP
    session.stop()  # given as an episode ends: the session records no further episode
    session._begin_attempt()
    assert session.run(3) == []
