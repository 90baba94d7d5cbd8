"""`flywheel hilserl`'s inputs are checked before Ray starts (one line, exit 2, nothing
written), replay buffers the node cannot hold are refused, and the recording end fails loudly
instead of dropping episodes."""

import pytest

from actors.hilserl import checks, driver
from pipelines import hilserl

CAMS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture()
def no_ray(monkeypatch):
    """Any start of Ray fails the test: these inputs must be refused before it."""

    def connect(*args, **kwargs):
        raise AssertionError("Ray was started before the inputs were checked")

    monkeypatch.setattr(driver, "connect", connect)


def main(tmp_path, capsys, *args) -> tuple[int, str]:
    code = hilserl.main(["--no-mlflow", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--encoder", "frozen:/nonexistent"], "--encoder frozen:/nonexistent: no such checkpoint"),
        (["--camera", "front"], "--camera 'front': expected NAME=SOURCE"),
        (
            ["--reward", "classifier", "--reward-url", "http://127.0.0.1:9/reward"],
            "the reward endpoint (http://127.0.0.1:9/reward) is unreachable",
        ),
        (["--offline-dataset", "/nonexistent"], "/nonexistent"),
        (["--storage", "/proc/flywheel"], "--storage /proc/flywheel"),
    ],
)
def test_bad_inputs_are_refused_before_ray_starts(
    tmp_path, capsys, no_ray, encoder_path, args, message
):
    storage = ["--storage", str(tmp_path / "runs")] if "--storage" not in args else []
    code, err = main(tmp_path, capsys, "--encoder", f"frozen:{encoder_path}", *storage, *args)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_storage_under_a_regular_file_is_refused_before_ray_starts(
    tmp_path, capsys, no_ray, encoder_path
):
    (tmp_path / "file").write_text("x")
    storage = tmp_path / "file" / "runs"
    code, err = main(
        tmp_path, capsys, "--encoder", f"frozen:{encoder_path}", "--storage", str(storage)
    )
    assert code == 2 and len(err.splitlines()) == 1 and "--storage" in err, err
    assert (tmp_path / "file").read_text() == "x"


def test_replay_buffers_the_node_cannot_hold_are_refused_before_ray_starts(
    tmp_path, capsys, no_ray, monkeypatch
):
    # the case: 100k online + 100k offline frames of two 128 px cameras, ~19.7 GB
    monkeypatch.setattr(checks, "available_memory", lambda: 16 * 10**9)
    args = ["--encoder", "drqv2", "--image-size", "128", "--storage", str(tmp_path / "runs")]
    code, err = main(tmp_path, capsys, *args)
    assert code == 2 and len(err.splitlines()) == 1, err
    for flag in ("--online-capacity 100000", "--offline-capacity 100000", "--image-size 128"):
        assert flag in err, err
    assert "19.7 GB" in err and not (tmp_path / "runs").exists()


def test_the_replay_estimate_is_what_the_learners_buffers_take():
    from pipelines.rl.replay import ReplayBuffer

    cfg = hilserl.HilserlConfig.from_flags(online_capacity=300, offline_capacity=200)
    spec = checks.replay_spec(CAMS, 128, 0)
    buffers = [ReplayBuffer(c, spec, checks.ACTION_DIM) for c in (300, 200)]
    assert checks.replay_bytes(cfg, spec) == sum(b.nbytes() for b in buffers)
    checks.check_replay_memory(cfg, spec, available=10**9)  # 50 MB: fits


# ----------------------------------------------------------------------------- the recording end


def test_a_stalled_recorder_fails_the_run_instead_of_dropping_episodes():
    with pytest.raises(RuntimeError, match=r"wrote no episode in 0 s.*holds 3 of the run's 5"):
        driver._wait_for_recording(lambda: (3, 0, []), 5, "runs/t/episodes", stall_s=0)


def test_a_failed_recording_fails_the_run():
    with pytest.raises(RuntimeError, match=r"recording runs/t/episodes failed \(OSError: full\)"):
        driver._wait_for_recording(lambda: (2, 0, ["OSError: full"]), 5, "runs/t/episodes")


def test_a_recording_that_keeps_writing_is_waited_for():
    written = iter([(1, 0, []), (2, 0, []), (4, 1, [])])
    assert driver._wait_for_recording(lambda: next(written), 5, "ds", stall_s=600) == [
        "warning: 1 episode(s) were lost with their collector before the recorder read them; "
        "ds holds 4 of the run's 5 episodes"
    ]
