"""Feetech protocol 0 on the wire: instruction codes, status error bits, packets and their parser.

Instruction `FF FF ID LEN INSTR PARAMS... CHK`, status `FF FF ID LEN ERR PARAMS... CHK`,
LEN = len(PARAMS) + 2, CHK = ~(ID + LEN + INSTR/ERR + sum(PARAMS)) & 0xFF. `build_packet`
writes one; `PacketParser` reads a byte stream back into `Instruction`s (what the servo
emulator, `actors.feetech.emulator`, answers).
"""

from __future__ import annotations

from dataclasses import dataclass

BROADCAST_ID = 0xFE
INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

# Status packet error bits, as named in scservo_sdk.protocol_packet_handler (ERRBIT_*).
ERRBIT_VOLTAGE = 0x01
ERRBIT_ANGLE = 0x02
ERRBIT_OVERHEAT = 0x04
ERRBIT_OVERELE = 0x08
ERRBIT_OVERLOAD = 0x20


def checksum(body: bytes | bytearray) -> int:
    """Protocol 0 checksum of the bytes after the header: ~(ID + LEN + INSTR/ERR + PARAMS)."""
    return ~sum(body) & 0xFF


def build_packet(servo_id: int, code: int, params: bytes = b"") -> bytes:
    """A packet `FF FF ID LEN CODE PARAMS CHK`; `code` is the instruction or the error byte."""
    body = bytes([servo_id, len(params) + 2, code]) + bytes(params)
    return b"\xff\xff" + body + bytes([checksum(body)])


@dataclass(frozen=True)
class Instruction:
    """One instruction packet with a valid checksum."""

    servo_id: int
    instruction: int
    params: bytes


class PacketParser:
    """Stream parser: `feed` bytes as they come, get back every complete, valid instruction.

    Bytes before a `FF FF` header are skipped; a packet with a bad checksum is dropped whole.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.bad_checksums = 0

    @property
    def pending(self) -> bool:
        """Whether a partial packet is buffered."""
        return bool(self._buffer)

    def reset(self) -> None:
        """Discard any partial packet."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Instruction]:
        """Buffer `data` and return the instructions completed by it, in order."""
        buf = self._buffer
        buf.extend(data)
        packets: list[Instruction] = []
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                del buf[: len(buf) - 1 if buf.endswith(b"\xff") else len(buf)]
                return packets
            del buf[:start]
            if len(buf) < 4:
                return packets
            if buf[2] == 0xFF:  # a third 0xFF: the header starts one byte later
                del buf[0]
                continue
            length = buf[3]
            if length < 2:
                del buf[:2]
                continue
            total = length + 4
            if len(buf) < total:
                return packets
            packet = bytes(buf[:total])
            del buf[:total]
            if checksum(packet[2:-1]) != packet[-1]:
                self.bad_checksums += 1
                continue
            packets.append(Instruction(packet[2], packet[4], packet[5:-1]))
