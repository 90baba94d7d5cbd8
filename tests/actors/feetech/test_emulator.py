"""The emulator at byte level, through a raw client on its pty (no scservo_sdk involved)."""

import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from actors.feetech.emulator import STS3215Emulator
from actors.feetech.protocol import (
    BROADCAST_ID,
    INST_ACTION,
    INST_PING,
    INST_READ,
    INST_REG_WRITE,
    INST_SYNC_READ,
    INST_SYNC_WRITE,
    INST_WRITE,
    PacketParser,
    build_packet,
    checksum,
)
from tests.helpers import wait_until


class RawClient:
    """Writes bytes to the emulator's pty and reads what comes back."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def receive(self, size: int, timeout: float = 30.0) -> bytes:
        """Up to `size` bytes; the timeout is a liveness bound. Absence of a reply is shown by
        the reply to a later packet coming first (the emulator answers in order)."""
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < size:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            data += os.read(self.fd, size - len(data))
        return data

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture()
def emulator():
    with STS3215Emulator(range(1, 7)) as emulator:
        yield emulator


@pytest.fixture()
def client(emulator):
    client = RawClient(emulator.port)
    yield client
    client.close()


def test_checksum_and_packet_layout():
    assert checksum(bytes([1, 2, INST_PING])) == 0xFB
    assert build_packet(1, INST_PING) == bytes([0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB])
    read = build_packet(1, INST_READ, bytes([56, 2]))
    assert read == bytes([0xFF, 0xFF, 0x01, 0x04, 0x02, 0x38, 0x02, 0xBE])


def test_parser_handles_split_noise_and_bad_checksums():
    parser = PacketParser()
    ping = build_packet(3, INST_PING)
    assert parser.feed(b"\x00\x12" + ping[:3]) == []
    assert parser.pending
    [packet] = parser.feed(ping[3:])
    assert (packet.servo_id, packet.instruction, packet.params) == (3, INST_PING, b"")
    bad = bytearray(build_packet(2, INST_READ, bytes([56, 2])))
    bad[-1] ^= 0x01
    write = build_packet(4, INST_WRITE, bytes([42, 0xFF, 0xFF]))  # FF FF inside the params
    packets = parser.feed(b"\xff" + bytes(bad) + write)
    assert [(p.servo_id, p.params) for p in packets] == [(4, bytes([42, 0xFF, 0xFF]))]
    assert parser.bad_checksums == 1
    assert not parser.pending


def test_ping_reply_bytes(client):
    client.send(bytes([0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB]))
    assert client.receive(6) == bytes([0xFF, 0xFF, 0x01, 0x02, 0x00, 0xFC])


def test_read_present_position_reply_bytes(client):
    client.send(bytes([0xFF, 0xFF, 0x01, 0x04, 0x02, 0x38, 0x02, 0xBE]))
    # Present_Position 2047 = 0x07FF little-endian, error byte 0.
    assert client.receive(8) == bytes([0xFF, 0xFF, 0x01, 0x04, 0x00, 0xFF, 0x07, 0xF4])


def test_read_model_number(client):
    client.send(build_packet(6, INST_READ, bytes([3, 2])))
    assert client.receive(8) == build_packet(6, 0, bytes([0x09, 0x03]))  # 777


def test_packet_split_across_writes():
    # a resync window far longer than any stall of this test, so only the split is tested
    with STS3215Emulator(range(1, 7), resync_idle_s=60.0) as emulator:
        client = RawClient(emulator.port)
        packet = build_packet(2, INST_PING)
        client.send(packet[:3])
        assert wait_until(lambda: emulator.input_pending)  # the first part has been read
        client.send(packet[3:])
        assert client.receive(6) == build_packet(2, 0)
        assert not emulator.input_pending
        client.close()


def test_bad_checksum_is_ignored(client, emulator):
    bad = bytearray(build_packet(1, INST_PING))
    bad[-1] ^= 0xFF
    client.send(bytes(bad))
    client.send(build_packet(2, INST_PING))
    assert client.receive(6) == build_packet(2, 0)  # the first reply: none to the bad packet
    assert emulator.bad_checksum_count == 1


def test_write_is_acknowledged_and_applied(client, emulator):
    client.send(build_packet(3, INST_WRITE, bytes([42, 0x00, 0x08])))  # Goal_Position 2048
    assert client.receive(6) == build_packet(3, 0)
    assert emulator.goal_position(3) == 2048


def test_sync_read_answers_in_listed_order(client, emulator):
    emulator.set_position(3, 100)
    emulator.set_position(1, 4000)
    client.send(build_packet(BROADCAST_ID, INST_SYNC_READ, bytes([56, 2, 3, 1])))
    expected = build_packet(3, 0, bytes([100, 0])) + build_packet(1, 0, bytes([0xA0, 0x0F]))
    assert client.receive(len(expected)) == expected


def test_sync_write_and_broadcast_get_no_reply(client, emulator):
    params = bytes([40, 1, 1, 1, 2, 1])  # Torque_Enable=1 on IDs 1 and 2
    client.send(build_packet(BROADCAST_ID, INST_SYNC_WRITE, params))
    client.send(build_packet(BROADCAST_ID, INST_WRITE, bytes([41, 7])))  # Acceleration=7 on all
    client.send(build_packet(BROADCAST_ID, INST_PING))
    client.send(build_packet(3, INST_PING))
    assert client.receive(6) == build_packet(3, 0)  # the first reply: none to the broadcasts
    assert emulator.torque_enabled(1) and emulator.torque_enabled(2)
    assert not emulator.torque_enabled(3)
    assert all(emulator.read_register(i, "Acceleration") == 7 for i in range(1, 7))


def test_unknown_id_and_killed_servo_do_not_answer(client, emulator):
    client.send(build_packet(9, INST_PING))
    emulator.kill(2)
    client.send(build_packet(2, INST_PING))
    client.send(build_packet(3, INST_PING))
    assert client.receive(6) == build_packet(3, 0)  # the first reply: neither 9 nor 2 answered
    emulator.revive(2)
    client.send(build_packet(2, INST_PING))
    assert client.receive(6) == build_packet(2, 0)


def test_error_bits_and_corrupt_reply(client, emulator):
    emulator.set_error(1, 0x20)
    client.send(build_packet(1, INST_PING))
    assert client.receive(6) == build_packet(1, 0x20)
    emulator.corrupt_replies(1)
    client.send(build_packet(1, INST_PING))
    corrupt = client.receive(6)
    assert corrupt[:-1] == build_packet(1, 0x20)[:-1]
    assert corrupt[-1] != checksum(corrupt[2:-1])
    with pytest.raises(ValueError):
        emulator.set_error(1, 0x80)


def test_homing_offset_shifts_reported_position(emulator):
    emulator.set_position(1, 100)
    emulator.write_register(1, "Homing_Offset", 300)
    assert emulator.present_position(1) == (100 - 300) % 4096
    emulator.write_register(1, "Homing_Offset", -1547)
    assert emulator.present_position(1) == 1647
    assert emulator.encoder_position(1) == 100


def timed(call):
    """(call(), monotonic time before it, after it): the call happened between the two."""
    before = time.monotonic()
    value = call()
    return value, before, time.monotonic()


def test_motion_towards_goal_at_bounded_speed():
    # Motion follows the wall clock, so every bound below comes from clock readings taken
    # around the calls, never from how long a sleep lasted. 1800 counts at the default 60
    # counts/s is half a minute of motion: still under way when looked at, however slowly
    # this test runs. Servo 2 moves at its Goal_Velocity of 20000 counts/s instead.
    goal = 2047 + 1800
    with STS3215Emulator([1, 2], speed=60.0) as emulator:
        emulator.write_register(2, "Goal_Velocity", 20000)
        for servo in (1, 2):
            emulator.write_register(servo, "Torque_Enable", 1)
        _, set_before, set_after = timed(lambda: emulator.write_register(1, "Goal_Position", goal))
        time.sleep(0.2)  # let it move (any duration works)
        position, read_before, read_after = timed(lambda: emulator.present_position(1))
        moved = position - 2047
        assert 60 * (read_before - set_after) - 1 <= moved <= 60 * (read_after - set_before) + 1
        assert emulator.read_register(1, "Moving") == 1
        assert emulator.read_register(1, "Present_Velocity") == 60

        _, set_before, set_after = timed(lambda: emulator.write_register(2, "Goal_Position", goal))
        time.sleep(0.02)
        position, read_before, read_after = timed(lambda: emulator.present_position(2))
        moved = position - 2047
        assert min(1800, 20000 * (read_before - set_after)) - 1 <= moved
        assert moved <= min(1800, 20000 * (read_after - set_before)) + 1
        assert moved > 60 * (read_after - set_before) + 1  # faster than the default speed
        assert wait_until(lambda: emulator.present_position(2) == goal)
        assert emulator.read_register(2, "Moving") == 0
        assert emulator.read_register(2, "Present_Velocity") == 0


def test_torque_off_only_moves_from_outside(emulator):
    emulator.write_register(1, "Goal_Position", 3000)
    time.sleep(0.02)
    assert emulator.present_position(1) == 2047
    emulator.set_position(1, 1234)
    assert emulator.positions()[1] == 1234


def test_on_update_hook_reports_positions():
    seen: list[dict[int, int]] = []
    ticked = threading.Event()

    def on_update(positions):
        seen.append(positions)
        if len(seen) >= 5:
            ticked.set()

    emulator = STS3215Emulator([1, 2], on_update=on_update, update_hz=200)
    emulator.set_position(2, 99)  # before the motion thread starts: every report has it
    with emulator:
        assert ticked.wait(30.0)
    assert seen[0] == seen[-1] == {1: 2047, 2: 99}


def test_reg_write_then_action(client, emulator):
    client.send(build_packet(2, INST_REG_WRITE, bytes([42, 0x10, 0x00])))
    assert client.receive(6) == build_packet(2, 0)
    assert emulator.goal_position(2) == 2047  # not applied yet
    client.send(build_packet(BROADCAST_ID, INST_ACTION))
    client.send(build_packet(1, INST_PING))
    assert client.receive(6) == build_packet(1, 0)  # the first reply: none to the ACTION
    assert emulator.goal_position(2) == 16


def test_response_status_level_zero_silences_writes(client, emulator):
    emulator.write_register(3, "Response_Status_Level", 0)
    client.send(build_packet(3, INST_WRITE, bytes([41, 5])))
    client.send(build_packet(3, INST_PING))
    assert client.receive(6) == build_packet(3, 0)  # the first reply: none to the write
    assert emulator.read_register(3, "Acceleration") == 5


def test_writing_id_moves_the_servo(client, emulator):
    client.send(build_packet(1, INST_WRITE, bytes([5, 9])))
    assert client.receive(6) == build_packet(1, 0)  # acknowledged under the old ID
    assert emulator.ids == [2, 3, 4, 5, 6, 9]
    client.send(build_packet(9, INST_PING))
    assert client.receive(6) == build_packet(9, 0)


def test_read_only_registers_ignore_writes(client, emulator):
    client.send(build_packet(1, INST_WRITE, bytes([3, 0x24, 0x04])))  # Model_Number
    assert client.receive(6) == build_packet(1, 0)
    assert emulator.read_register(1, "Model_Number") == 777


def test_command_line_serves_two_buses():
    root = Path(__file__).resolve().parents[3]
    child = subprocess.Popen(
        [sys.executable, "-m", "actors.feetech.emulator"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [child.stdout.readline().strip() for _ in range(2)]
        assert [line.split(": ")[0] for line in lines] == ["follower", "leader"]
        client = RawClient(lines[1].split(": ")[1])
        client.send(build_packet(6, INST_PING))
        assert client.receive(6) == build_packet(6, 0)
        client.close()
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 0
