"""A Feetech STS3215 bus (e.g. one SO-101 arm) on top of the unmodified `scservo_sdk`.

Values are register values as Python ints: sign-magnitude registers (Homing_Offset, velocities,
load) are decoded on read and encoded on write; no calibration is applied here (see
`calibration.py`). Timeouts and corrupt status packets are retried up to `retries` times, counted
in `retry_count`; when the retries run out a `BusError` names the motor(s) and the SDK's error.

The protocol has no sequence numbers: a status packet that comes after its request timed out
can be read as the answer to the next request to that servo. So before a retry the bus waits
until the line has been quiet for a reply timeout, discarding what arrives (the failed
attempt's late replies), input is flushed before every attempt, and a reply of the wrong shape
(shorter than the register read, which the SDK would index past its end) counts as a corrupt
reply. A reply timeout well above the bus's real latency keeps late replies rare.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import scservo_sdk as scs

from actors.feetech.registers import (
    STS3215_MODEL_NUMBER,
    Register,
    decode_value,
    encode_value,
    from_bytes,
    register,
    to_bytes,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SO101_MOTORS: dict[str, int] = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "elbow_flex": 3,
    "wrist_flex": 4,
    "wrist_roll": 5,
    "gripper": 6,
}
"""Motor names and servo IDs of an SO-101 arm (follower and leader alike)."""

RETRYABLE = frozenset(
    {scs.COMM_RX_TIMEOUT, scs.COMM_RX_CORRUPT, scs.COMM_RX_FAIL, scs.COMM_TX_FAIL}
)
"""SDK results worth another attempt (no status packet, a damaged one, a failed transmit)."""


class BusError(RuntimeError):
    """A bus transaction failed; `motors` names the motors concerned, `reason` the SDK's text."""

    def __init__(self, message: str, motors: Iterable[str] = (), reason: str = "") -> None:
        super().__init__(message)
        self.motors = list(motors)
        self.reason = reason or message


class HandshakeError(BusError):
    """Configured motors are missing or are not STS3215s; `problems` maps motor -> finding."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        details = "; ".join(problems.values())
        super().__init__(f"motor check failed: {details}", problems)


class MotorFaultError(BusError):
    """A motor answered with hardware error bits set; `errors` maps motor -> error byte."""

    def __init__(self, message: str, errors: Mapping[str, int]) -> None:
        self.errors = dict(errors)
        super().__init__(message, errors)


class _PortHandler(scs.PortHandler):
    """The SDK's PortHandler with two behaviours changed by overriding (the SDK is untouched).

    * reply timeout: `timeout_ms` plus the transfer time of the bytes, instead of the SDK's
      fixed 2 * 16 ms (USB latency timer) + 2 ms; LeRobot overrides the same method.
    * waiting: `readPort` blocks in select() until a byte arrives or the timeout passes. The SDK
      polls a non-blocking port in a tight loop, burning a core for every reply and, with an
      in-process emulator, holding the GIL the emulator's thread needs to answer.
    """

    def __init__(self, port_name: str, timeout_ms: float) -> None:
        super().__init__(port_name)
        self.timeout_ms = timeout_ms

    def setPacketTimeout(self, packet_length: int) -> None:  # noqa: N802 (SDK name)
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + self.timeout_ms

    def readPort(self, length: int) -> bytes:  # noqa: N802 (SDK name)
        remaining_ms = self.packet_timeout - self.getTimeSinceStart()
        if length > 0 and remaining_ms > 0:
            select.select([self.ser.fileno()], [], [], remaining_ms / 1000.0)
        return self.ser.read(length)


def _writable(reg: Register) -> Register:
    if reg.read_only:
        raise ValueError(f"{reg.name} is read-only")
    return reg


class FeetechBus:
    """Several STS3215 servos on one serial port, addressed by motor name.

    `motors` maps names to IDs, e.g. {"shoulder_pan": 1, ..., "gripper": 6}. `retries` is the
    number of extra attempts after a failed one; `timeout_ms` the wait for a status packet
    (plus its transfer time). Thread-safe: one transaction at a time.
    """

    def __init__(
        self,
        port: str,
        motors: Mapping[str, int],
        baudrate: int = 1_000_000,
        retries: int = 3,
        timeout_ms: float = 50.0,
        raise_on_fault: bool = True,
    ) -> None:
        """`raise_on_fault`: raise MotorFaultError when a single read/write/ping reports hardware
        error bits (the transaction itself succeeded); otherwise only log them. Either way the
        latest error byte per motor is kept in `hardware_errors`."""
        if len(set(motors.values())) != len(motors):
            raise ValueError(f"duplicate motor IDs in {dict(motors)}")
        self.port = port
        self.motors: dict[str, int] = dict(motors)
        self.baudrate = baudrate
        self.retries = retries
        self.timeout_ms = timeout_ms
        self.raise_on_fault = raise_on_fault
        self.retry_count = 0
        """Retries performed so far (successful or not)."""
        self.hardware_errors: dict[str, int] = {}
        """Latest nonzero error byte per motor from single-motor transactions."""
        self._lock = threading.RLock()
        self._port_handler: _PortHandler | None = None
        self._packet_handler = scs.PacketHandler(0)
        self._sync_readers: dict[tuple[str, tuple[int, ...]], scs.GroupSyncRead] = {}
        self._sync_writers: dict[str, scs.GroupSyncWrite] = {}

    # ----- connection ----------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._port_handler is not None

    def connect(self, handshake: bool = True) -> None:
        """Open the port and, with `handshake`, check every motor (see `check_motors`)."""
        if self.is_connected:
            raise BusError(f"{self.port} is already connected")
        port_handler = _PortHandler(self.port, self.timeout_ms)
        try:
            opened = port_handler.setBaudRate(self.baudrate)  # opens the port
        except Exception as exc:
            raise BusError(f"cannot open {self.port}: {exc}") from exc
        if not opened:
            raise BusError(f"cannot open {self.port}: unsupported baud rate {self.baudrate}")
        self._port_handler = port_handler
        if handshake:
            try:
                self.check_motors()
            except BaseException:
                self.disconnect()
                raise

    def disconnect(self, disable_torque: bool = False) -> None:
        """Close the port, optionally after switching torque off on every motor (best effort)."""
        if not self.is_connected:
            return
        if disable_torque:
            self.torque_off_best_effort()
        with self._lock:
            self._port_handler.closePort()
            self._port_handler = None
            self._sync_readers.clear()
            self._sync_writers.clear()

    def __enter__(self) -> FeetechBus:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def check_motors(self) -> dict[str, int]:
        """Ping every motor and check its model number is 777 (STS3215); return the models.

        Raises HandshakeError naming each motor that did not answer or has another model.
        Hardware error bits do not fail the check; they are logged and kept in `hardware_errors`.
        """
        models: dict[str, int] = {}
        problems: dict[str, str] = {}
        for name in self.motors:
            try:
                models[name] = self.ping(name, raise_on_fault=False)
            except BusError as exc:
                problems[name] = f"{self._label(name)}: no answer ({exc.reason})"
                continue
            if models[name] != STS3215_MODEL_NUMBER:
                problems[name] = (
                    f"{self._label(name)}: model {models[name]}, "
                    f"expected {STS3215_MODEL_NUMBER} (STS3215)"
                )
        if problems:
            raise HandshakeError(problems)
        return models

    # ----- single-motor transactions -------------------------------------------------------

    def ping(self, motor: str, raise_on_fault: bool | None = None) -> int:
        """Ping one motor; return its model number (the SDK reads address 3 after the ping).

        `raise_on_fault` overrides the bus-wide setting for this call.
        """
        motor_id = self.motors[motor]

        def attempt() -> tuple[int, int, int]:
            model, result, error = self._packet_handler.ping(self._port(), motor_id)
            return result, error, model

        return self._single(f"ping of {self._label(motor)}", motor, attempt, raise_on_fault)

    def read(self, register_name: str, motor: str) -> int:
        """Read one register of one motor."""
        reg, motor_id = register(register_name), self.motors[motor]

        def attempt() -> tuple[int, int, int]:
            data, result, error = self._packet_handler.readTxRx(
                self._port(), motor_id, reg.address, reg.size
            )
            if result == scs.COMM_SUCCESS and len(data) < reg.size:
                result = scs.COMM_RX_CORRUPT  # a shorter reply: another request's, late
            value = decode_value(reg, from_bytes(data)) if result == scs.COMM_SUCCESS else 0
            return result, error, value

        return self._single(f"read of {reg.name} from {self._label(motor)}", motor, attempt)

    def write(self, register_name: str, motor: str, value: int) -> None:
        """Write one register of one motor and wait for its acknowledgement."""
        reg, motor_id = register(register_name), self.motors[motor]
        data = to_bytes(encode_value(_writable(reg), value), reg.size)

        def attempt() -> tuple[int, int, None]:
            result, error = self._packet_handler.writeTxRx(
                self._port(), motor_id, reg.address, reg.size, data
            )
            return result, error, None

        self._single(f"write of {reg.name}={value} to {self._label(motor)}", motor, attempt)

    # ----- group transactions --------------------------------------------------------------

    def sync_read(self, register_name: str, motors: Iterable[str] | None = None) -> dict[str, int]:
        """Read one register of several motors (default: all) with one SYNC_READ."""
        reg = register(register_name)
        ids = {name: self.motors[name] for name in self._names(motors)}
        key = (reg.name, tuple(ids.values()))
        if key not in self._sync_readers:
            group = scs.GroupSyncRead(self._port(), self._packet_handler, reg.address, reg.size)
            for motor_id in ids.values():
                group.addParam(motor_id)
            self._sync_readers[key] = group
        group = self._sync_readers[key]

        def attempt() -> tuple[int, list[str], dict[str, int]]:
            result = group.txRxPacket()
            # The SDK stops at the first motor without a valid reply, leaving its data empty.
            failed = [n for n, i in ids.items() if len(group.data_dict[i]) < reg.size]
            if result != scs.COMM_SUCCESS:
                return result, failed[:1], {}
            values = {
                name: decode_value(reg, from_bytes(group.data_dict[motor_id][: reg.size]))
                for name, motor_id in ids.items()
            }
            return result, [], values

        return self._with_retries(f"sync read of {reg.name}", list(ids), attempt)

    def sync_write(self, register_name: str, values: Mapping[str, int]) -> None:
        """Write one register of several motors with one SYNC_WRITE (no acknowledgement)."""
        reg = register(register_name)
        encoded = {
            self.motors[name]: to_bytes(encode_value(_writable(reg), value), reg.size)
            for name, value in values.items()
        }
        if reg.name not in self._sync_writers:
            self._sync_writers[reg.name] = scs.GroupSyncWrite(
                self._port(), self._packet_handler, reg.address, reg.size
            )
        group = self._sync_writers[reg.name]

        def attempt() -> tuple[int, list[str], None]:
            group.clearParam()
            for motor_id, data in encoded.items():
                group.addParam(motor_id, data)
            return group.txPacket(), list(values), None

        self._with_retries(f"sync write of {reg.name}", list(values), attempt)

    # ----- torque --------------------------------------------------------------------------

    def enable_torque(self, motors: Iterable[str] | None = None) -> None:
        """Torque_Enable=1 then Lock=1 on each motor (default: all), acknowledged writes."""
        for motor in self._names(motors):
            self.write("Torque_Enable", motor, 1)
            self.write("Lock", motor, 1)

    def disable_torque(self, motors: Iterable[str] | None = None) -> None:
        """Torque_Enable=0 then Lock=0 (EEPROM writable) on each motor (default: all)."""
        for motor in self._names(motors):
            self.write("Torque_Enable", motor, 0)
            self.write("Lock", motor, 0)

    def torque_off_best_effort(self) -> dict[str, str]:
        """Switch torque off on every motor that still answers; never raises.

        For higher layers after a failure: one SYNC_WRITE of Torque_Enable=0 reaches every live
        motor at once, then each motor gets an acknowledged Torque_Enable=0 and Lock=0 (no
        retries). Returns {motor: error text} for the motors that could not be confirmed.
        """
        failures: dict[str, str] = {}
        with self._lock:
            retries, self.retries = self.retries, 0
            try:
                try:
                    self.sync_write("Torque_Enable", dict.fromkeys(self.motors, 0))
                except BusError as exc:
                    log.warning("torque-off sync write failed: %s", exc)
                for motor in self.motors:
                    try:
                        self.write("Torque_Enable", motor, 0)
                        self.write("Lock", motor, 0)
                    except BusError as exc:
                        failures[motor] = str(exc)
            finally:
                self.retries = retries
        return failures

    # ----- internals -----------------------------------------------------------------------

    def _port(self) -> _PortHandler:
        if self._port_handler is None:
            raise BusError(f"{self.port} is not connected")
        return self._port_handler

    def _label(self, motor: str) -> str:
        return f"{motor} (id {self.motors[motor]})"

    def _names(self, motors: Iterable[str] | None) -> list[str]:
        return list(self.motors) if motors is None else list(motors)

    def _single(
        self,
        what: str,
        motor: str,
        attempt: Callable[[], tuple[int, int, T]],
        raise_on_fault: bool | None = None,
    ) -> T:
        """Run a single-motor transaction with retries; check the status packet's error byte."""

        def run() -> tuple[int, list[str], tuple[int, T]]:
            result, error, value = attempt()
            return result, [motor], (error, value)

        error, value = self._with_retries(what, [motor], run)
        if not error:
            self.hardware_errors.pop(motor, None)
            return value
        self.hardware_errors[motor] = error
        text = f"{what}: {self._packet_handler.getRxPacketError(error)} (error byte {error:#04x})"
        if self.raise_on_fault if raise_on_fault is None else raise_on_fault:
            raise MotorFaultError(text, {motor: error})
        log.warning(text)
        return value

    def _drain(self, port: _PortHandler) -> None:
        """Discard input until none has come for a reply timeout (at most 10 timeouts long)."""
        quiet_s = self.timeout_ms / 1000.0
        for _ in range(10):
            port.ser.reset_input_buffer()
            if not select.select([port.ser.fileno()], [], [], quiet_s)[0]:
                return

    def _with_retries(
        self, what: str, motors: list[str], attempt: Callable[[], tuple[int, list[str], T]]
    ) -> T:
        """Call `attempt` until it succeeds; return its value.

        `attempt` returns the SDK result, the motors it failed on and its value. Stale input (a
        late reply to an earlier request) is flushed before every attempt.
        """
        with self._lock:
            port = self._port()
            attempts = self.retries + 1
            for number in range(1, attempts + 1):
                port.is_using = False  # our lock serializes; clear a flag left by an interruption
                if number > 1:
                    self._drain(port)
                port.ser.reset_input_buffer()
                try:
                    result, failed, value = attempt()
                except IndexError:  # the SDK indexed a reply shorter than it expected: a late
                    # reply to an earlier request, taken for this one (e.g. by ping's model read)
                    result, failed, value = scs.COMM_RX_CORRUPT, [], None
                if result == scs.COMM_SUCCESS:
                    return value
                if result not in RETRYABLE or number == attempts:
                    break
                self.retry_count += 1
                log.debug("%s: %s, retrying", what, self._packet_handler.getTxRxResult(result))
            culprits = failed or motors
            names = ", ".join(self._label(m) for m in culprits)
            reason = self._packet_handler.getTxRxResult(result) or f"SDK result {result}"
            message = f"{what} failed after {number} attempt(s): {names}: {reason}"
            raise BusError(message, culprits, reason)
