"""`flywheel robot emulate`: emulated follower and leader arms on pseudo-terminals, until Ctrl-C.

Any program that speaks the Feetech protocol (this project's `flywheel robot` commands,
LeRobot's) can then open the printed ports as it would a real SO-101's.
"""

from __future__ import annotations

import time

from actors.emulated_robot import EmulatedSO101
from actors.so101.config import EmulateConfig


def emulate(config: EmulateConfig) -> int:
    robot = EmulatedSO101(
        task=config.sim_task, seed=config.seed, hand=None if config.hand == "none" else config.hand
    )
    ports = robot.ports()
    print(f"follower: {ports['follower']}")
    print(f"leader: {ports['leader']}")
    print(
        "emulated SO-101 arms (STS3215, ids 1-6); the follower moves the simulated arm. "
        "Ctrl-C stops.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        robot.close()
    return 0
