"""One emulated STS3215's state: its register memory, its encoder, its injected faults.

`DEFAULT_REGISTERS` are a servo's power-on values; `READ_ONLY_ADDRESSES` the bytes a write
leaves alone. `EmulatedServo` is what `actors.feetech.emulator.STS3215Emulator` keeps per ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.feetech.registers import (
    CONTROL_TABLE,
    COUNTS_PER_TURN,
    HALF_TURN,
    MAX_POSITION,
    STS3215_MODEL_NUMBER,
    decode_value,
    encode_value,
    from_bytes,
    register,
    to_bytes,
)

MEMORY_SIZE = 256

DEFAULT_REGISTERS: dict[str, int] = {
    "Firmware_Major_Version": 3,
    "Firmware_Minor_Version": 10,
    "Model_Number": STS3215_MODEL_NUMBER,
    "Baud_Rate": 0,  # 0 = 1,000,000 baud
    "Return_Delay_Time": 0,
    "Response_Status_Level": 1,
    "Min_Position_Limit": 0,
    "Max_Position_Limit": MAX_POSITION,
    "Max_Temperature_Limit": 70,
    "Max_Voltage_Limit": 140,
    "Min_Voltage_Limit": 40,
    "Max_Torque_Limit": 1000,
    "P_Coefficient": 32,
    "D_Coefficient": 32,
    "I_Coefficient": 0,
    "Homing_Offset": 0,
    "Operating_Mode": 0,
    "Torque_Enable": 0,
    "Acceleration": 0,
    "Goal_Position": HALF_TURN,
    "Goal_Velocity": 0,
    "Torque_Limit": 1000,
    "Lock": 0,
    "Present_Voltage": 120,  # 0.1 V units: 12.0 V
    "Present_Temperature": 30,
}
"""Power-on register values of an emulated servo (ID and positions are set per servo)."""

READ_ONLY_ADDRESSES = frozenset(
    reg.address + i for reg in CONTROL_TABLE.values() if reg.read_only for i in range(reg.size)
)


@dataclass
class EmulatedServo:
    """State of one emulated servo."""

    memory: bytearray
    encoder: float  # physical position in counts, 0 <= encoder < 4096
    alive: bool = True
    drop: int = 0
    corrupt: int = 0
    delay_s: float = 0.0
    delay_n: int = 0
    error_bits: int = 0
    registered_write: tuple[int, bytes] | None = None

    def get(self, name: str) -> int:
        reg = register(name)
        return decode_value(reg, from_bytes(self.memory[reg.address : reg.address + reg.size]))

    def set(self, name: str, value: int) -> None:
        reg = register(name)
        self.memory[reg.address : reg.address + reg.size] = bytes(
            to_bytes(encode_value(reg, value), reg.size)
        )

    def reported(self) -> float:
        """Present position in the homed frame (float, not yet rounded)."""
        return (self.encoder - self.get("Homing_Offset")) % COUNTS_PER_TURN
