"""`flywheel robot ping | calibrate | teleop | emulate`: the SO-101 arms, real or emulated.

Every command works against real serial ports (`--port`, `--follower-port`, `--leader-port`)
and against the emulated arms (`--sim`: STS3215 emulators speaking the real protocol, the
follower coupled to the simulator and its cameras), which is the default when no port is given.
Calibrations are JSON files, one per arm id, in `--calibration-dir`
(default ~/.cache/flywheel/calibration); the emulated arms use their known calibration.
The drivers live in `actors.so101` (`calibrate`, `record`, `emulate`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from actors.feetech.bus import BusError
from actors.feetech.calibration import CalibrationError
from actors.so101 import RobotError, add_calibration_dir_flag, add_robot_flags
from actors.so101.calibrate import calibrate, ping
from actors.so101.config import CalibrateConfig, EmulateConfig, PingConfig, TeleopConfig
from actors.so101.emulate import emulate
from actors.so101.record import teleop
from pipelines.dataset import DatasetError
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError
from pipelines.runtime.flags import config_from_flags
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES

COMMANDS = {
    "ping": (PingConfig, ping),
    "calibrate": (CalibrateConfig, calibrate),
    "teleop": (TeleopConfig, teleop),
    "emulate": (EmulateConfig, emulate),
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def arm(q, help_port: str = "serial port (unset: an emulated arm)"):
        q.add_argument("--port", default=None, help=help_port)
        q.add_argument("--sim", action="store_true", help="an emulated arm (without --port)")

    q = sub.add_parser("ping", help="handshake with every servo of an arm and read its joints")
    arm(q)
    add_calibration_dir_flag(q)
    q.add_argument("--arm-id", default=None, help="name of the arm's calibration")

    q = sub.add_parser("calibrate", help="record an arm's homing offsets and ranges")
    arm(q)
    q.add_argument("--leader", action="store_true", help="(--sim) calibrate the leader")
    add_calibration_dir_flag(q)
    q.add_argument("--arm-id", required=True, help="name to save the calibration under")

    q = sub.add_parser("teleop", help="drive the follower from the leader and record episodes")
    q.add_argument("out", help="LeRobot v2.1 dataset folder (created, or appended to)")
    add_robot_flags(q)
    q.add_argument("--fps", type=float, default=30.0, help="control and recording rate")
    q.add_argument("--episodes", type=int, default=1, help="episodes to record")
    q.add_argument("--episode-time", type=float, default=30.0, help="seconds per episode")
    q.add_argument(
        "--task",
        default=None,
        help="what the episodes do (unset with --sim: the simulated task's text)",
    )
    q.add_argument(
        "--max-step", type=float, default=10.0, help="largest follower move per tick (degrees)"
    )
    q.add_argument(
        "--steps-after-success",
        type=int,
        default=0,
        metavar="N",
        help="record N more frames after the success key (reward 1 on them)",
    )
    q.add_argument("--sim", action="store_true", help="emulated arms (the default without ports)")
    q.add_argument(
        "--sim-task", default=DEFAULT_TASK, choices=TASK_NAMES, help="(--sim) the simulated task"
    )
    q.add_argument("--seed", type=int, default=0, help="(--sim) the simulated world's seed")
    q.add_argument("--image-size", type=int, default=128, help="(--sim) camera image size")
    q.add_argument(
        "--vcodec",
        default=None,
        help="video codec: av1 (the default where PyAV has SVT-AV1, as LeRobot's), h264 or "
        "mpeg4; appending keeps the dataset's",
    )
    q.add_argument(
        "--format",
        default=None,
        help="LeRobot layout of a new dataset: v2.1 (unset) or v3.0; appending keeps the dataset's",
    )
    q.add_argument("--ray-address", default=None, help="a Ray cluster to join (unset: local)")

    q = sub.add_parser("emulate", help="start emulated follower and leader arms; print ports")
    q.add_argument(
        "--sim-task", default=DEFAULT_TASK, choices=TASK_NAMES, help="the simulated task"
    )
    q.add_argument("--seed", type=int, default=0, help="the simulated world's seed")
    q.add_argument(
        "--hand",
        default="none",
        choices=["none", "expert"],
        help="move the leader like an expert operator would",
    )
    return p


def build(args: argparse.Namespace):
    return config_from_flags(COMMANDS[args.command][0], args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel robot") -> int:
    parser = build_parser(prog)
    config = parser.parse_config(argv, build)
    command = next(name for name, (cls, _) in COMMANDS.items() if isinstance(config, cls))
    try:
        return COMMANDS[command][1](config)
    except (RobotError, DatasetError, ClusterError, CalibrationError, BusError, OSError) as e:
        print(f"{prog} {command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.robot"))
