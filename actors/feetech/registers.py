"""STS3215 control table and value encodings (Feetech protocol 0: little-endian, sign-magnitude).

Addresses and sizes follow Feetech's STS/SMS memory table (as used by LeRobot). Addresses 0..39
are EEPROM (persisted only while `Lock` is 0), 40 and up are RAM. Sign bits follow LeRobot's
STS_SMS_SERIES_ENCODINGS_TABLE; positions carry sign bit 15, which only matters outside position
mode (in position mode they stay within 0..4095).
"""

from __future__ import annotations

from dataclasses import dataclass

STS3215_MODEL_NUMBER = 777
COUNTS_PER_TURN = 4096
MAX_POSITION = COUNTS_PER_TURN - 1
HALF_TURN = 2047
"""Present_Position a joint reads after half-turn homing (the middle of 0..4095)."""


@dataclass(frozen=True)
class Register:
    """One entry of the control table."""

    name: str
    address: int
    size: int  # bytes: 1 or 2
    sign_bit: int | None = None  # sign-magnitude encoding with this sign bit, None if unsigned
    read_only: bool = False

    @property
    def eeprom(self) -> bool:
        """Whether the register lives in the EEPROM area (addresses below 40)."""
        return self.address < 40


_TABLE = [
    Register("Firmware_Major_Version", 0, 1, read_only=True),
    Register("Firmware_Minor_Version", 1, 1, read_only=True),
    Register("Model_Number", 3, 2, read_only=True),
    Register("ID", 5, 1),
    Register("Baud_Rate", 6, 1),
    Register("Return_Delay_Time", 7, 1),
    Register("Response_Status_Level", 8, 1),
    Register("Min_Position_Limit", 9, 2),
    Register("Max_Position_Limit", 11, 2),
    Register("Max_Temperature_Limit", 13, 1),
    Register("Max_Voltage_Limit", 14, 1),
    Register("Min_Voltage_Limit", 15, 1),
    Register("Max_Torque_Limit", 16, 2),
    Register("P_Coefficient", 21, 1),
    Register("D_Coefficient", 22, 1),
    Register("I_Coefficient", 23, 1),
    Register("Homing_Offset", 31, 2, sign_bit=11),
    Register("Operating_Mode", 33, 1),
    Register("Torque_Enable", 40, 1),
    Register("Acceleration", 41, 1),
    Register("Goal_Position", 42, 2, sign_bit=15),
    Register("Goal_Time", 44, 2),
    Register("Goal_Velocity", 46, 2, sign_bit=15),
    Register("Torque_Limit", 48, 2),
    Register("Lock", 55, 1),
    Register("Present_Position", 56, 2, sign_bit=15, read_only=True),
    Register("Present_Velocity", 58, 2, sign_bit=15, read_only=True),
    Register("Present_Load", 60, 2, sign_bit=10, read_only=True),
    Register("Present_Voltage", 62, 1, read_only=True),
    Register("Present_Temperature", 63, 1, read_only=True),
    Register("Status", 65, 1, read_only=True),
    Register("Moving", 66, 1, read_only=True),
    Register("Present_Current", 69, 2, read_only=True),
]

CONTROL_TABLE: dict[str, Register] = {register.name: register for register in _TABLE}
"""STS3215 registers by name."""


def register(name: str) -> Register:
    """The register called `name`; KeyError listing the known names otherwise."""
    try:
        return CONTROL_TABLE[name]
    except KeyError:
        raise KeyError(
            f"unknown STS3215 register {name!r}; known: {sorted(CONTROL_TABLE)}"
        ) from None


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Encode a signed int: magnitude in the bits below `sign_bit`, `sign_bit` set if negative.

    Raises ValueError if |value| does not fit below the sign bit.
    """
    magnitude = abs(value)
    if magnitude >= 1 << sign_bit:
        raise ValueError(f"{value} does not fit in sign-magnitude with sign bit {sign_bit}")
    return magnitude | (1 << sign_bit) if value < 0 else magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Inverse of `encode_sign_magnitude` (bits above the sign bit are ignored)."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def encode_value(reg: Register, value: int) -> int:
    """A register value as stored on the servo (sign-magnitude where the register uses it)."""
    raw = value if reg.sign_bit is None else encode_sign_magnitude(value, reg.sign_bit)
    if not 0 <= raw < 1 << (8 * reg.size):
        raise ValueError(f"{reg.name}: {value} does not fit in {reg.size} byte(s)")
    return raw


def decode_value(reg: Register, raw: int) -> int:
    """A stored register value as a Python int (signed where the register is)."""
    return raw if reg.sign_bit is None else decode_sign_magnitude(raw, reg.sign_bit)


def to_bytes(raw: int, size: int) -> list[int]:
    """Little-endian bytes of an unsigned value (protocol 0 byte order)."""
    return [(raw >> (8 * i)) & 0xFF for i in range(size)]


def from_bytes(data: bytes | list[int]) -> int:
    """Unsigned value of little-endian bytes."""
    return sum(byte << (8 * i) for i, byte in enumerate(data))
