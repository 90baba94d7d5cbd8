"""FeetechBus (real scservo_sdk client) end to end against the emulator."""

import time

import pytest

from actors.feetech.bus import SO101_MOTORS, BusError, FeetechBus, HandshakeError, MotorFaultError
from actors.feetech.emulator import STS3215Emulator
from actors.feetech.protocol import ERRBIT_OVERLOAD, ERRBIT_VOLTAGE

# The emulated servos answer from a thread of this process: on a busy machine a reply can take
# tens of milliseconds. A wide reply timeout keeps live servos from looking dead; the tests that
# need a timeout (a dead servo, a dropped or late reply) pay for it a few times.
REPLY_TIMEOUT_MS = 300


@pytest.fixture()
def emulator():
    with STS3215Emulator(range(1, 7), speed=20000.0) as emulator:
        yield emulator


@pytest.fixture()
def bus(emulator):
    with FeetechBus(emulator.port, SO101_MOTORS, timeout_ms=REPLY_TIMEOUT_MS) as bus:
        yield bus


def wait_until_still(bus: FeetechBus, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(bus.sync_read("Moving").values()):
        assert time.monotonic() < deadline, "motors still moving"
        time.sleep(0.01)


def test_handshake_reports_models(emulator):
    bus = FeetechBus(emulator.port, SO101_MOTORS, timeout_ms=REPLY_TIMEOUT_MS)
    bus.connect()
    assert bus.check_motors() == dict.fromkeys(SO101_MOTORS, 777)
    bus.disconnect()
    assert not bus.is_connected


def test_handshake_names_missing_motor(emulator):
    emulator.kill(2)
    bus = FeetechBus(emulator.port, SO101_MOTORS, retries=1, timeout_ms=REPLY_TIMEOUT_MS)
    with pytest.raises(HandshakeError, match=r"shoulder_lift \(id 2\): no answer") as caught:
        bus.connect()
    assert list(caught.value.problems) == ["shoulder_lift"]
    assert caught.value.motors == ["shoulder_lift"]
    assert not bus.is_connected


def test_handshake_names_wrong_model(emulator):
    emulator.write_register(6, "Model_Number", 1060)
    bus = FeetechBus(emulator.port, SO101_MOTORS, timeout_ms=REPLY_TIMEOUT_MS)
    with pytest.raises(
        HandshakeError, match=r"gripper \(id 6\): model 1060, expected 777 \(STS3215\)"
    ):
        bus.connect()


def test_unknown_port_raises_bus_error():
    with pytest.raises(BusError, match="cannot open"):
        FeetechBus("/dev/does-not-exist", SO101_MOTORS).connect()


def test_goals_written_are_positions_read(bus, emulator):
    bus.enable_torque()
    assert all(emulator.torque_enabled(i) for i in range(1, 7))
    assert all(emulator.read_register(i, "Lock") == 1 for i in range(1, 7))
    goals = {name: 500 + 500 * i for i, name in enumerate(SO101_MOTORS)}
    bus.sync_write("Goal_Position", goals)
    wait_until_still(bus)
    assert bus.sync_read("Present_Position") == goals
    assert bus.sync_read("Goal_Position") == goals
    assert bus.read("Present_Position", "elbow_flex") == goals["elbow_flex"]
    assert emulator.bad_checksum_count == 0  # every packet the bus sent was well formed


def test_signed_registers_through_the_bus(bus, emulator):
    bus.write("Homing_Offset", "wrist_flex", -1000)
    assert emulator.read_register(4, "Homing_Offset") == -1000
    assert bus.read("Homing_Offset", "wrist_flex") == -1000
    bus.sync_write("Goal_Velocity", {"shoulder_pan": -500, "gripper": 700})
    assert bus.sync_read("Goal_Velocity", ["shoulder_pan", "gripper"]) == {
        "shoulder_pan": -500,
        "gripper": 700,
    }
    bus.write("Goal_Velocity", "shoulder_pan", 1000)  # moving down at 1000 counts/s
    bus.enable_torque(["shoulder_pan"])
    bus.write("Goal_Position", "shoulder_pan", 1000)
    assert bus.read("Present_Velocity", "shoulder_pan") == -1000
    assert bus.read("Moving", "shoulder_pan") == 1


def test_torque_off_hand_moves_reading(bus, emulator):
    bus.disable_torque()
    assert not any(emulator.torque_enabled(i) for i in range(1, 7))
    emulator.set_position(1, 1000)
    emulator.set_position(6, 3100)
    positions = bus.sync_read("Present_Position")
    assert positions["shoulder_pan"] == 1000
    assert positions["gripper"] == 3100
    bus.write("Homing_Offset", "shoulder_pan", -100)
    assert bus.read("Present_Position", "shoulder_pan") == 1100


def test_torque_on_holds_position_against_the_hand(bus, emulator):
    emulator.set_position(3, 1500)
    bus.enable_torque(["elbow_flex"])
    assert emulator.goal_position(3) == 1500  # torque on holds where it is
    emulator.set_position(3, 2500)
    wait_until_still(bus)  # it drives back to its goal, then stops there
    assert bus.read("Present_Position", "elbow_flex") == 1500


def test_dropped_reply_is_retried_invisibly(bus, emulator):
    emulator.set_position(3, 1234)
    emulator.drop_replies(3, 1)
    assert bus.sync_read("Present_Position")["elbow_flex"] == 1234
    assert bus.retry_count >= 1  # (a reply late on a busy machine may cost one more)
    before = bus.retry_count
    emulator.drop_replies(5, 1)
    assert bus.read("Present_Position", "wrist_roll") == 2047
    assert bus.retry_count >= before + 1


def test_corrupt_reply_is_retried_invisibly(bus, emulator):
    emulator.set_position(4, 321)
    emulator.corrupt_replies(4, 1)
    assert bus.sync_read("Present_Position")["wrist_flex"] == 321
    assert bus.retry_count >= 1
    before = bus.retry_count
    emulator.corrupt_replies(4, 1)
    bus.write("Goal_Position", "wrist_flex", 777)
    assert emulator.goal_position(4) == 777
    assert bus.retry_count >= before + 1


def test_late_reply_is_flushed_not_mistaken(bus, emulator):
    emulator.set_position(2, 2222)
    emulator.delay_replies(2, 2 * REPLY_TIMEOUT_MS / 1000, 1)  # past the timeout: 1 or 2 retries
    assert bus.sync_read("Present_Position")["shoulder_lift"] == 2222
    assert bus.retry_count >= 1
    assert bus.sync_read("Present_Position")["shoulder_lift"] == 2222
    assert bus.read("Model_Number", "shoulder_lift") == 777


def test_late_ping_reply_is_not_taken_for_the_model_number(bus, emulator):
    # A ping is two requests: PING, then a READ of the model number. The first PING's reply
    # comes so late (after the timeout, and after the quiet wait before the retry) that the
    # retry's PING takes it, and its READ takes the retry's PING reply, which has no data (the
    # SDK indexes past its end): a corrupt reply, retried after the line has gone quiet.
    # (On a busy machine the late reply may land elsewhere; the outcome must be the same.)
    emulator.delay_replies(4, 2.5 * REPLY_TIMEOUT_MS / 1000, 1)
    assert bus.ping("wrist_flex") == 777
    assert bus.retry_count >= 1
    assert bus.read("Present_Position", "wrist_flex") == 2047  # and the bus is in step again


def test_dead_motor_raises_naming_it_and_others_end_torque_off(bus, emulator):
    bus.enable_torque()
    emulator.kill(5)
    before = bus.retry_count
    with pytest.raises(BusError, match=r"wrist_roll \(id 5\).*no status packet") as caught:
        bus.sync_read("Present_Position")
    assert caught.value.motors == ["wrist_roll"]
    assert bus.retry_count - before == bus.retries  # every attempt failed: all retries used
    with pytest.raises(BusError, match=r"wrist_roll \(id 5\)"):
        bus.write("Goal_Position", "wrist_roll", 100)
    failures = bus.torque_off_best_effort()
    assert list(failures) == ["wrist_roll"]
    assert not any(emulator.torque_enabled(i) for i in (1, 2, 3, 4, 6))
    assert emulator.torque_enabled(5)
    assert bus.retries == 3  # restored


def test_hardware_error_bits(emulator):
    emulator.set_error(6, ERRBIT_OVERLOAD)
    with FeetechBus(emulator.port, SO101_MOTORS, timeout_ms=REPLY_TIMEOUT_MS) as bus:
        # the handshake tolerates error bits
        assert bus.hardware_errors == {"gripper": ERRBIT_OVERLOAD}
        with pytest.raises(MotorFaultError, match=r"gripper \(id 6\).*Overload") as caught:
            bus.read("Present_Position", "gripper")
        assert caught.value.errors == {"gripper": ERRBIT_OVERLOAD}
        assert bus.sync_read("Present_Position")["gripper"] == 2047  # SDK drops the error byte
        emulator.set_error(6, 0)
        bus.read("Present_Position", "gripper")
        assert bus.hardware_errors == {}
    emulator.set_error(1, ERRBIT_VOLTAGE)
    with FeetechBus(
        emulator.port, SO101_MOTORS, raise_on_fault=False, timeout_ms=REPLY_TIMEOUT_MS
    ) as bus:
        assert bus.read("Present_Voltage", "shoulder_pan") == 120
        assert bus.hardware_errors == {"shoulder_pan": ERRBIT_VOLTAGE}


def test_read_only_register_write_is_refused(bus):
    with pytest.raises(ValueError, match="read-only"):
        bus.write("Present_Position", "gripper", 100)
    with pytest.raises(ValueError, match="read-only"):
        bus.sync_write("Model_Number", {"gripper": 1})
