"""`flywheel robot ping | calibrate | teleop | emulate`: the SO-101 arms, real or emulated.

Every command works against real serial ports (`--port`, `--follower-port`, `--leader-port`)
and against the emulated arms (`--sim`: STS3215 emulators speaking the real protocol, the
follower coupled to the simulator and its cameras), which is the default when no port is given.
Calibrations are JSON files in LeRobot's schema, one per arm id, where LeRobot keeps them
(~/.cache/huggingface/lerobot/calibration/robots/so_follower/<id>.json, so101_follower for
LeRobot < 0.5, and teleoperators/so_leader|so101_leader for leaders; $HF_LEROBOT_CALIBRATION
overrides the root), so that an arm calibrated with LeRobot needs no second calibration
(`--follower-id`/`--leader-id` name it) and `calibrate` writes where LeRobot reads; or in
`--calibration-dir DIR`; the emulated arms use their known calibration.
The drivers live in `actors.so101` (`calibrate`, `record`, `emulate`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from actors.feetech.bus import BusError
from actors.feetech.calibration import CalibrationError
from actors.so101.calibrate import calibrate, ping
from actors.so101.config import CalibrateConfig, EmulateConfig, PingConfig, TeleopConfig
from actors.so101.emulate import emulate
from actors.so101.record import teleop
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.flags import add_flags, config_from_flags

COMMANDS = {  # name: (its config, what runs it, its help)
    "ping": (PingConfig, ping, "handshake with every servo of an arm and read its joints"),
    "calibrate": (CalibrateConfig, calibrate, "record an arm's homing offsets and ranges"),
    "teleop": (
        TeleopConfig,
        teleop,
        "drive the follower from the leader and record episodes",
    ),
    "emulate": (EmulateConfig, emulate, "start emulated follower and leader arms; print ports"),
}
# What a command's own --help says beyond its one line.
DESCRIPTIONS = {
    "teleop": (
        "Drive the follower from the leader and record episodes. Keys, while recording: "
        "s ends the episode as a success, f as a failure (saved with episode_success true or "
        "false in meta/episodes, the outcome `flywheel train-estimator --variant recap` "
        "learns from; s also puts next.reward 1.0 on its last frame), r re-records it, q saves "
        "it and stops. An episode ended by its time limit or by q has no outcome: add it later "
        "with `flywheel outcomes OUT --from set:EPISODES=success` (or =failure)."
    ),
}
# The user's mistakes of a command on the arms (besides job_error's), reported in one line.
ERRORS = (CalibrationError, BusError, OSError)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, (config, _, help_text) in COMMANDS.items():
        description = DESCRIPTIONS.get(name, help_text)
        add_flags(sub.add_parser(name, help=help_text, description=description), config)
    return p


def build(args: argparse.Namespace):
    return config_from_flags(COMMANDS[args.command][0], args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel robot") -> int:
    config = build_parser(prog).parse_config(argv, build)
    command = next(name for name, (cls, *_) in COMMANDS.items() if isinstance(config, cls))
    code = run_job(COMMANDS[command][1], config, f"{prog} {command}", errors=ERRORS)
    return 2 if code is None else code


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.robot"))
