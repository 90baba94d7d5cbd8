import pytest

from actors.feetech.registers import (
    CONTROL_TABLE,
    decode_sign_magnitude,
    decode_value,
    encode_sign_magnitude,
    encode_value,
    from_bytes,
    register,
    to_bytes,
)


def test_sign_magnitude_known_values():
    assert encode_sign_magnitude(0, 11) == 0
    assert encode_sign_magnitude(953, 11) == 953
    assert encode_sign_magnitude(-1547, 11) == 1547 | 0x800
    assert encode_sign_magnitude(-500, 15) == 500 | 0x8000
    assert decode_sign_magnitude(0x800 | 1547, 11) == -1547
    assert decode_sign_magnitude(0x8000 | 3000, 15) == -3000
    assert decode_sign_magnitude(0x400 | 12, 10) == -12


@pytest.mark.parametrize("sign_bit", [10, 11, 15])
def test_sign_magnitude_round_trips(sign_bit):
    limit = (1 << sign_bit) - 1
    for value in range(-limit, limit + 1, 7):
        assert decode_sign_magnitude(encode_sign_magnitude(value, sign_bit), sign_bit) == value
    for value in (-limit, limit):
        assert decode_sign_magnitude(encode_sign_magnitude(value, sign_bit), sign_bit) == value


def test_sign_magnitude_overflow_raises():
    with pytest.raises(ValueError):
        encode_sign_magnitude(2048, 11)
    with pytest.raises(ValueError):
        encode_sign_magnitude(-2048, 11)


def test_register_encodings():
    homing = register("Homing_Offset")
    assert (homing.address, homing.size, homing.sign_bit) == (31, 2, 11)
    assert decode_value(homing, encode_value(homing, -1547)) == -1547
    velocity = register("Present_Velocity")
    assert decode_value(velocity, encode_value(velocity, -3000)) == -3000
    assert register("Present_Load").sign_bit == 10
    position = register("Goal_Position")
    assert encode_value(position, 4095) == 4095
    with pytest.raises(ValueError):
        encode_value(register("Torque_Enable"), 256)
    with pytest.raises(KeyError, match="Nope"):
        register("Nope")


def test_control_table_addresses():
    expected = {
        "Model_Number": (3, 2),
        "ID": (5, 1),
        "Baud_Rate": (6, 1),
        "Min_Position_Limit": (9, 2),
        "Max_Position_Limit": (11, 2),
        "Homing_Offset": (31, 2),
        "Operating_Mode": (33, 1),
        "Torque_Enable": (40, 1),
        "Acceleration": (41, 1),
        "Goal_Position": (42, 2),
        "Goal_Velocity": (46, 2),
        "Torque_Limit": (48, 2),
        "Lock": (55, 1),
        "Present_Position": (56, 2),
        "Present_Velocity": (58, 2),
        "Present_Load": (60, 2),
        "Present_Voltage": (62, 1),
        "Present_Temperature": (63, 1),
        "Moving": (66, 1),
        "Present_Current": (69, 2),
    }
    for name, (address, size) in expected.items():
        assert (CONTROL_TABLE[name].address, CONTROL_TABLE[name].size) == (address, size)


def test_little_endian_bytes():
    assert to_bytes(0x07FF, 2) == [0xFF, 0x07]
    assert from_bytes([0xFF, 0x07]) == 0x07FF
    assert from_bytes(bytes(to_bytes(777, 2))) == 777
