"""A bus of emulated STS3215 servos on a pseudo-terminal, speaking Feetech protocol 0 byte for byte.

`STS3215Emulator` opens a pty pair and serves the slave side's path (`.port`, e.g. /dev/pts/7)
to any client, in particular the unmodified `scservo_sdk`. A background thread parses the
instruction stream and answers like a bus of real servos:

* packets: instruction `FF FF ID LEN INSTR PARAMS... CHK`, status `FF FF ID LEN ERR PARAMS... CHK`,
  LEN = len(PARAMS) + 2, CHK = ~(ID + LEN + INSTR/ERR + sum(PARAMS)) & 0xFF. Packets with a bad
  checksum are dropped silently; a partial packet idle for 20 ms is discarded (resync).
* PING, READ, WRITE, REG_WRITE + ACTION, SYNC_READ (one status packet per listed, answering servo,
  in the listed order), SYNC_WRITE (no reply). Broadcast ID 0xFE never gets a reply.
  Response_Status_Level 0 silences the replies to everything but PING and READ.
* memory: a 256-byte EEPROM/RAM image per servo; writes to read-only registers are ignored.
  Writing ID moves the servo to the new ID (the reply to that write still carries the old one).
* position frame: Present_Position = (encoder - Homing_Offset) mod 4096, Homing_Offset being
  sign-magnitude with sign bit 11. Goal_Position and the position limits are in that same frame.
* motion (position mode only): with Torque_Enable=1 the servo moves from Present_Position
  towards Goal_Position (clamped to Min/Max_Position_Limit when Min < Max) at |Goal_Velocity|
  counts/s, or at `speed` when Goal_Velocity is 0, without wrapping through 0/4095. Moving and
  Present_Velocity (counts/s, sign bit 15) are reported. Switching torque on sets Goal_Position
  to Present_Position (unless that same write sets it), so the servo holds where it is.
  Motion is advanced from the wall clock whenever a packet or an accessor touches the state; a
  motion thread ticking at `update_hz` runs only when an `on_update` callback is given.
* with torque off the encoder moves only through `set_position` (a hand moving the arm).
* not modeled: acceleration, other operating modes, Lock (stored; EEPROM writes always take
  effect, there are no power cycles), load and current (read 0), baud rate, return delay time.

Fault injection (thread-safe, per servo): `drop_replies`, `corrupt_replies`, `delay_replies`,
`set_error`, `kill` / `revive`. The packets are `actors.feetech.protocol`'s, a servo's memory
and state `actors.feetech.servo`'s. Run `python -m actors.feetech.emulator` for a follower and a
leader bus on two ptys.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping

from actors.feetech.protocol import (
    BROADCAST_ID,
    INST_ACTION,
    INST_PING,
    INST_READ,
    INST_REG_WRITE,
    INST_SYNC_READ,
    INST_SYNC_WRITE,
    INST_WRITE,
    Instruction,
    PacketParser,
    build_packet,
)
from actors.feetech.registers import (
    COUNTS_PER_TURN,
    HALF_TURN,
    MAX_POSITION,
    register,
)
from actors.feetech.servo import (
    DEFAULT_REGISTERS,
    MEMORY_SIZE,
    READ_ONLY_ADDRESSES,
    EmulatedServo,
)

RESYNC_IDLE_S = 0.02


class STS3215Emulator:
    """Several emulated STS3215 servos on one pseudo-terminal bus (see the module docstring)."""

    def __init__(
        self,
        ids: Iterable[int] = range(1, 7),
        *,
        speed: float = 3000.0,
        initial_positions: Mapping[int, int] | None = None,
        on_update: Callable[[dict[int, int]], None] | None = None,
        update_hz: float = 200.0,
        resync_idle_s: float = RESYNC_IDLE_S,
    ) -> None:
        """Servos `ids` at encoder `initial_positions` (default 2047), moving at `speed` counts/s.

        `on_update(positions)` is called from a motion thread at `update_hz` with every
        servo's Present_Position. A partial packet idle for `resync_idle_s` is discarded.
        """
        self._lock = threading.RLock()
        self._resync_idle_s = float(resync_idle_s)
        self._speed = float(speed)
        self._on_update = on_update
        self._update_period = 1.0 / update_hz
        initial_positions = initial_positions or {}
        self._servos: dict[int, EmulatedServo] = {}
        for servo_id in ids:
            if not 0 <= servo_id < BROADCAST_ID:
                raise ValueError(f"servo ID {servo_id} out of range 0..253")
            servo = EmulatedServo(
                bytearray(MEMORY_SIZE), float(initial_positions.get(servo_id, HALF_TURN))
            )
            for name, value in DEFAULT_REGISTERS.items():
                servo.set(name, value)
            servo.set("ID", servo_id)
            self._servos[servo_id] = servo
            self._refresh(servo)
        self._last_advance = time.monotonic()
        self._parser = PacketParser()
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._port = ""

    # ----- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> str:
        """Path of the pty slave a client opens (valid after `start`)."""
        return self._port

    @property
    def ids(self) -> list[int]:
        """IDs of the servos on the bus."""
        with self._lock:
            return sorted(self._servos)

    @property
    def bad_checksum_count(self) -> int:
        """Instruction packets dropped so far for a bad checksum."""
        return self._parser.bad_checksums

    @property
    def input_pending(self) -> bool:
        """Whether part of an instruction packet has been read and the rest is awaited."""
        return self._parser.pending

    def start(self) -> STS3215Emulator:
        """Open the pty and start serving it (and the motion thread if `on_update` is set)."""
        if self._threads:
            raise RuntimeError("emulator already started")
        self._master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)  # no echo, no line discipline until the client configures it
        self._port = os.ttyname(self._slave_fd)
        self._wake_r, self._wake_w = os.pipe()
        self._parser.reset()
        self._stopping.clear()
        self._last_advance = time.monotonic()
        self._threads = [threading.Thread(target=self._serve, name="sts3215-io", daemon=True)]
        if self._on_update is not None:
            self._threads.append(
                threading.Thread(target=self._tick, name="sts3215-motion", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the threads and close the pty (clients then see I/O errors)."""
        if not self._threads:
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        for fd in (self._master_fd, self._slave_fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master_fd = self._slave_fd = self._wake_r = self._wake_w = None

    def __enter__(self) -> STS3215Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- accessors (for tests and for coupling to a simulator) ---------------------------

    def present_position(self, servo_id: int) -> int:
        """Present_Position register (homed frame)."""
        with self._lock:
            self._advance()
            return self._servo(servo_id).get("Present_Position")

    def encoder_position(self, servo_id: int) -> int:
        """Physical encoder position, before the homing offset."""
        with self._lock:
            self._advance()
            return round(self._servo(servo_id).encoder) % COUNTS_PER_TURN

    def positions(self) -> dict[int, int]:
        """Present_Position of every servo by ID."""
        with self._lock:
            self._advance()
            return {i: s.get("Present_Position") for i, s in sorted(self._servos.items())}

    def goal_position(self, servo_id: int) -> int:
        """Goal_Position register (homed frame)."""
        with self._lock:
            return self._servo(servo_id).get("Goal_Position")

    def torque_enabled(self, servo_id: int) -> bool:
        """Whether Torque_Enable is 1."""
        with self._lock:
            return self._servo(servo_id).get("Torque_Enable") == 1

    def set_position(self, servo_id: int, encoder: int) -> None:
        """Move the servo's shaft from outside: set the physical encoder position (0..4095).

        With torque on, the servo then drives back towards its goal.
        """
        if not 0 <= encoder <= MAX_POSITION:
            raise ValueError(f"encoder position {encoder} out of range 0..{MAX_POSITION}")
        with self._lock:
            self._advance()
            servo = self._servo(servo_id)
            servo.encoder = float(encoder)
            self._refresh(servo)

    def read_register(self, servo_id: int, name: str) -> int:
        """A register's value (decoded), read directly from memory."""
        with self._lock:
            self._advance()
            return self._servo(servo_id).get(name)

    def write_register(self, servo_id: int, name: str, value: int) -> None:
        """Set a register directly, read-only ones included (e.g. Model_Number, Present_Voltage).

        Present_Position/Velocity and Moving are recomputed from the motion state; use
        `set_position` to move a servo.
        """
        with self._lock:
            self._advance()
            servo = self._servo(servo_id)
            before = bytes(servo.memory)
            servo.set(name, value)
            reg = register(name)
            self._after_write(servo_id, before, range(reg.address, reg.address + reg.size))

    # ----- fault injection -----------------------------------------------------------------

    def drop_replies(self, servo_id: int, n: int = 1) -> None:
        """Do not send the servo's next `n` status packets (the instructions are still executed)."""
        with self._lock:
            self._servo(servo_id).drop += n

    def corrupt_replies(self, servo_id: int, n: int = 1) -> None:
        """Send the servo's next `n` status packets with a wrong checksum."""
        with self._lock:
            self._servo(servo_id).corrupt += n

    def delay_replies(self, servo_id: int, seconds: float, n: int = 1) -> None:
        """Hold the servo's next `n` status packets back by `seconds` (the bus waits meanwhile)."""
        with self._lock:
            servo = self._servo(servo_id)
            servo.delay_s, servo.delay_n = seconds, n

    def set_error(self, servo_id: int, bits: int) -> None:
        """Report `bits` (ERRBIT_* flags, 0 to clear) in the error byte of every status packet."""
        if not 0 <= bits <= 0x7F:  # scservo_sdk rejects status packets with an error byte > 0x7F
            raise ValueError(f"error bits {bits:#x} out of range 0..0x7F")
        with self._lock:
            self._servo(servo_id).error_bits = bits

    def kill(self, servo_id: int) -> None:
        """The servo stops answering and executing anything, and stops moving (power lost)."""
        with self._lock:
            self._advance()
            self._servo(servo_id).alive = False

    def revive(self, servo_id: int) -> None:
        """Undo `kill`; registers keep the values they had."""
        with self._lock:
            self._advance()
            self._servo(servo_id).alive = True

    # ----- internals -----------------------------------------------------------------------

    def _servo(self, servo_id: int) -> EmulatedServo:
        try:
            return self._servos[servo_id]
        except KeyError:
            raise KeyError(f"no emulated servo with ID {servo_id}") from None

    def _refresh(self, servo: EmulatedServo, velocity: float = 0.0) -> None:
        """Recompute the Present_* registers from the encoder."""
        servo.set("Present_Position", round(servo.reported()) % COUNTS_PER_TURN)
        servo.set("Present_Velocity", max(-32767, min(32767, round(velocity))))
        servo.set("Moving", 1 if velocity else 0)

    def _target(self, servo: EmulatedServo) -> int:
        goal = servo.get("Goal_Position")
        low, high = servo.get("Min_Position_Limit"), servo.get("Max_Position_Limit")
        return min(high, max(low, goal)) if low < high else goal

    def _advance(self) -> None:
        """Move every powered servo with torque on towards its target, up to now."""
        now = time.monotonic()
        dt = now - self._last_advance
        self._last_advance = now
        for servo in self._servos.values():
            if not servo.alive or servo.get("Torque_Enable") != 1:
                continue
            position = servo.reported()
            error = self._target(servo) - position
            speed = abs(servo.get("Goal_Velocity")) or self._speed
            step = speed * dt
            if abs(error) <= step:
                servo.encoder += error
                velocity = 0.0
            else:
                servo.encoder += step if error > 0 else -step
                velocity = speed if error > 0 else -speed
            servo.encoder %= COUNTS_PER_TURN
            self._refresh(servo, velocity)

    def _after_write(self, servo_id: int, before: bytes, written: range) -> None:
        """Side effects of writing the addresses `written`: torque-on hold, ID change, Present_*.

        Switching torque on sets Goal_Position to the present position, unless the same write
        also set Goal_Position.
        """
        servo = self._servos[servo_id]
        torque, goal = register("Torque_Enable"), register("Goal_Position")
        switched_on = before[torque.address] != 1 and servo.memory[torque.address] == 1
        if switched_on and goal.address not in written:
            servo.set("Goal_Position", round(servo.reported()) % COUNTS_PER_TURN)
        self._refresh(servo)
        new_id = servo.get("ID")
        if new_id != servo_id:
            if new_id in self._servos or new_id >= BROADCAST_ID:
                servo.set("ID", servo_id)  # refuse a clash; a real bus would now be broken
            else:
                self._servos[new_id] = self._servos.pop(servo_id)

    def _write_memory(self, servo_id: int, address: int, data: bytes) -> None:
        servo = self._servos[servo_id]
        before = bytes(servo.memory)
        for offset, byte in enumerate(data):
            target = address + offset
            if target < MEMORY_SIZE and target not in READ_ONLY_ADDRESSES:
                servo.memory[target] = byte
        self._after_write(servo_id, before, range(address, address + len(data)))

    def _read_memory(self, servo_id: int, address: int, length: int) -> bytes:
        data = bytes(self._servos[servo_id].memory[address : address + length])
        return data + bytes(length - len(data))

    def _targets(self, servo_id: int) -> list[int]:
        """IDs an instruction reaches: every powered servo for broadcast, else that one."""
        if servo_id == BROADCAST_ID:
            return [i for i, s in self._servos.items() if s.alive]
        servo = self._servos.get(servo_id)
        return [servo_id] if servo is not None and servo.alive else []

    def _reply(
        self, servo: EmulatedServo, reply_id: int, params: bytes = b""
    ) -> tuple[bytes, float] | None:
        """The status packet (and its delay) `servo` sends as `reply_id`, after fault injection."""
        if servo.drop:
            servo.drop -= 1
            return None
        packet = build_packet(reply_id, servo.error_bits, params)
        if servo.corrupt:
            servo.corrupt -= 1
            packet = packet[:-1] + bytes([packet[-1] ^ 0xFF])
        delay = 0.0
        if servo.delay_n:
            servo.delay_n -= 1
            delay = servo.delay_s
        return packet, delay

    def _read_reply(self, servo_id: int, address: int, length: int) -> tuple[bytes, float] | None:
        data = self._read_memory(servo_id, address, length)
        return self._reply(self._servos[servo_id], servo_id, data)

    def _execute(self, packet: Instruction) -> list[tuple[bytes, float]]:
        """Run one instruction; return the status packets to send, in order, with delays."""
        with self._lock:
            self._advance()
            p, code = packet.params, packet.instruction
            targets = self._targets(packet.servo_id)
            servos = {i: self._servos[i] for i in targets}  # before any ID change
            unicast = packet.servo_id != BROADCAST_ID  # broadcast instructions get no reply
            replies: list[tuple[bytes, float] | None] = []
            if code == INST_PING and unicast:
                replies = [self._reply(servos[i], i) for i in targets]
            elif code == INST_READ and len(p) == 2 and unicast:
                replies = [self._read_reply(i, p[0], p[1]) for i in targets]
            elif code in (INST_WRITE, INST_REG_WRITE, INST_ACTION):
                if code == INST_ACTION or len(p) >= 2:
                    for i in targets:
                        self._write_or_register(i, code, p)
                    replies = [
                        self._reply(servos[i], i)
                        for i in targets
                        if unicast and servos[i].get("Response_Status_Level") != 0
                    ]
            elif code == INST_SYNC_READ and len(p) >= 2:
                listed = [i for i in p[2:] if i != BROADCAST_ID and self._targets(i)]
                return self._sent([self._read_reply(i, p[0], p[1]) for i in listed])
            elif code == INST_SYNC_WRITE and len(p) >= 2:
                address, length = p[0], p[1]
                for start in range(2, len(p) - length, length + 1):
                    servo_id = p[start]
                    if servo_id != BROADCAST_ID and self._targets(servo_id):
                        self._write_memory(servo_id, address, p[start + 1 : start + 1 + length])
            return self._sent(replies)

    @staticmethod
    def _sent(replies: list[tuple[bytes, float] | None]) -> list[tuple[bytes, float]]:
        return [reply for reply in replies if reply is not None]

    def _write_or_register(self, servo_id: int, code: int, params: bytes) -> None:
        """WRITE now, REG_WRITE for later, or ACTION: apply the registered write."""
        servo = self._servos[servo_id]
        if code == INST_WRITE:
            self._write_memory(servo_id, params[0], params[1:])
        elif code == INST_REG_WRITE:
            servo.registered_write = (params[0], params[1:])
        elif servo.registered_write is not None:
            registered, servo.registered_write = servo.registered_write, None
            self._write_memory(servo_id, *registered)

    def _serve(self) -> None:
        """I/O thread: read instructions from the pty master, write the replies."""
        master, wake = self._master_fd, self._wake_r
        while not self._stopping.is_set():
            timeout = self._resync_idle_s if self._parser.pending else None
            ready, _, _ = select.select([master, wake], [], [], timeout)
            if wake in ready:
                return
            if not ready:
                self._parser.reset()
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            for packet in self._parser.feed(data):
                for reply, delay in self._execute(packet):
                    if delay and self._stopping.wait(delay):
                        return
                    self._write_all(master, reply)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        while data:
            data = data[os.write(fd, data) :]

    def _tick(self) -> None:
        """Motion thread: advance motion on a fixed period and report positions to `on_update`."""
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            positions = self.positions()
            self._on_update(positions)
            next_tick += self._update_period
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick, delay = time.monotonic(), 0.0
            self._stopping.wait(delay)


def main(argv: list[str] | None = None) -> None:
    """Serve a follower and a leader emulator (IDs 1..6 each) until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", default="1,2,3,4,5,6", help="comma-separated servo IDs per bus")
    parser.add_argument("--buses", default="follower,leader", help="comma-separated bus names")
    args = parser.parse_args(argv)
    # Ctrl-C (SIGINT) stops it even when started from a shell's background job, which would
    # otherwise have SIGINT ignored (and Python then raises no KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ids = [int(i) for i in args.ids.split(",")]
    emulators = {name: STS3215Emulator(ids).start() for name in args.buses.split(",")}
    try:
        for name, emulator in emulators.items():
            print(f"{name}: {emulator.port}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for emulator in emulators.values():
            emulator.stop()


if __name__ == "__main__":
    main()
