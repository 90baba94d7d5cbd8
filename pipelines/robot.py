"""`flywheel robot ping | calibrate | teleop | emulate`: the SO-101 arms, real or emulated.

Every command works against real serial ports (`--port`, `--follower-port`, `--leader-port`)
and against the emulated arms (`--sim`: STS3215 emulators speaking the real protocol, the
follower coupled to the simulator and its cameras), which is the default when no port is given.
Calibrations are JSON files, one per arm id, in `--calibration-dir`
(default ~/.cache/flywheel/calibration); the emulated arms use their known calibration.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Sequence

from actors.arm import JOINTS
from actors.feetech.bus import SO101_MOTORS, BusError, FeetechBus
from actors.feetech.calibration import (
    DEFAULT_CALIBRATION_DIR,
    CalibrationError,
    Normalizer,
    finish_calibration,
    load_calibration,
    record_ranges_of_motion,
    save_calibration,
    set_half_turn_homings,
)
from pipelines.dataset import V21, V30, DatasetError, default_codec_note, resolve_video_codec
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError

CAMERA_PREFIX = "observation.images."


class RobotError(DatasetError):
    """A one-line problem with the arms, cameras or options (a DatasetError, so that every job
    that drives an arm reports it as it reports its other input problems)."""


def _calibration(arm_id: str | None, directory: str, sim: bool):
    if sim and arm_id is None:
        from actors.emulated_robot import EMULATED_CALIBRATION

        return EMULATED_CALIBRATION
    if arm_id is None:
        raise RobotError("--follower-id/--leader-id (or --arm-id): which calibration to use")
    return arm_calibration(arm_id, directory)


def arm_calibration(arm_id: str, directory: str):
    """The calibration `flywheel robot calibrate` recorded for `arm_id` in `directory`."""
    try:
        return load_calibration(arm_id, directory)
    except FileNotFoundError:
        raise RobotError(
            f"{directory}/{arm_id}.json: no calibration for arm {arm_id!r}; run "
            f"`flywheel robot calibrate --arm-id {arm_id} --port ...` first"
        ) from None
    except (CalibrationError, ValueError) as e:
        raise RobotError(f"{directory}/{arm_id}.json: {e}") from None


def _bus_options(sim: bool) -> dict:
    """Bus settings of an arm: the emulated arms' servos answer from threads on a shared CPU."""
    if not sim:
        return {}
    from actors.emulated_robot import REPLY_TIMEOUT_MS

    return {"timeout_ms": REPLY_TIMEOUT_MS}


# --------------------------------------------------------------------------- ping


def ping(args) -> int:
    robot = None
    port = args.port
    if port is None:
        from actors.emulated_robot import EmulatedSO101

        robot = EmulatedSO101()
        port = robot.ports()["follower"]
        print(f"emulated follower arm on {port}")
    try:
        with FeetechBus(port, SO101_MOTORS, **_bus_options(robot is not None)) as bus:
            models = bus.check_motors()
            raw = bus.sync_read("Present_Position")
            norm = None
            if args.arm_id or robot is not None:
                cal = _calibration(args.arm_id, args.calibration_dir, robot is not None)
                norm = Normalizer(cal).normalize(raw)
            for name, motor_id in SO101_MOTORS.items():
                unit = "%" if name == "gripper" else "deg"
                value = "" if norm is None else f"  {norm[name]:8.2f} {unit}"
                print(
                    f"  {name:<14} id {motor_id}  model {models[name]}  "
                    f"position {raw[name]:5d}{value}"
                )
    finally:
        if robot is not None:
            robot.close()
    return 0


# --------------------------------------------------------------------------- calibrate


def calibrate(args) -> int:
    robot = None
    port = args.port
    if port is None:
        from actors.emulated_robot import EmulatedSO101

        robot = EmulatedSO101()
        port = robot.ports()["leader" if args.leader else "follower"]
        print(f"emulated {'leader' if args.leader else 'follower'} arm on {port}")
    try:
        with FeetechBus(port, SO101_MOTORS, **_bus_options(robot is not None)) as bus:
            bus.disable_torque()
            if robot is None:
                _enter("Move the arm to the middle of its range of motion, then press Enter. ")
            else:
                hand = _SimHand(robot, args.leader)
                hand.hold_middle()
            offsets = set_half_turn_homings(bus)
            print("Move every joint through its whole range of motion; press Enter when done.")
            stop, closed = threading.Event(), []
            if robot is None:

                def wait():
                    try:
                        _enter("")
                    except RobotError as e:
                        closed.append(e)
                    stop.set()

                threading.Thread(target=wait, daemon=True).start()
            else:
                stop = hand.sweep()
            mins, maxes = record_ranges_of_motion(bus, stop=stop)
            if closed:
                raise closed[0]
            cal = finish_calibration(bus, offsets, mins, maxes, full_turn_motors=("wrist_roll",))
        path = save_calibration(cal, args.arm_id, args.calibration_dir)
    finally:
        if robot is not None:
            robot.close()
    for name, m in cal.items():
        print(
            f"  {name:<14} homing offset {m.homing_offset:5d}  range {m.range_min}..{m.range_max}"
        )
    print(f"Calibration of arm {args.arm_id!r} saved to {path}")
    return 0


def _enter(prompt: str) -> None:
    """Wait for Enter from the person at the arm; a closed input is a RobotError."""
    try:
        input(prompt)
    except EOFError:
        raise RobotError(
            "calibrate: standard input closed; calibrating a real arm needs a person at the "
            "terminal to press Enter (nothing was saved)"
        ) from None


class _SimHand:
    """The simulated hand for `calibrate --sim`: holds the arm mid-range, or sweeps each joint.

    The sweep is driven by the range recorder, one pose per poll: `sweep()` is the recorder's
    `stop` callback, called after every poll, which moves the arm to the next pose (or says the
    sweep is over). Every pose, the extremes included, is therefore seen by a poll however late
    the polls come; a hand on its own clock would lose any pose held for less than a poll period.
    """

    STEPS = (5, 10, 5)  # poses from the middle to the low limit, from low to high, back

    def __init__(self, robot, leader: bool):
        import numpy as np

        self.emulator = robot.leader if leader else robot.follower
        self.middle = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 50.0])

    def _put(self, joints) -> None:
        from actors.emulated_robot import encoders_from_joints

        for servo_id, count in encoders_from_joints(joints).items():
            self.emulator.set_position(servo_id, count)

    def hold_middle(self) -> None:
        self._put(self.middle)

    def poses(self):
        """Each joint in turn, middle -> low limit -> high limit -> middle, the others mid-range."""
        import numpy as np

        from pipelines.simulator import kinematics as kin

        to_low, across, back = self.STEPS
        for k in range(len(self.middle)):
            low, high, middle = kin.JOINT_LIMITS_LOW[k], kin.JOINT_LIMITS_HIGH[k], self.middle[k]
            for value in np.r_[
                np.linspace(middle, low, to_low + 1)[1:],
                np.linspace(low, high, across + 1)[1:],
                np.linspace(high, middle, back + 1)[1:],
            ]:
                pose = self.middle.copy()
                pose[k] = value
                yield pose

    def sweep(self):
        """A `stop` callback for `record_ranges_of_motion`: the next pose per call, then True."""
        poses = self.poses()

        def next_pose_or_done() -> bool:
            pose = next(poses, None)
            if pose is None:
                return True
            self._put(pose)
            return False

        return next_pose_or_done


# --------------------------------------------------------------------------- teleop


def camera_sources(values: list[str]) -> dict[str, int | str]:
    """`--camera front=0 --camera wrist=/dev/video2` -> {observation.images.front: 0, ...}."""
    specs = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or not source:
            raise RobotError(f"--camera {value!r}: expected NAME=SOURCE (e.g. front=0)")
        key = name if name.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + name
        specs[key] = int(source) if source.isdigit() else source
    return specs


def teleop(args) -> int:
    import ray

    from actors.arm import follower_actor, leader_actor
    from actors.camera import OpenCVCamera, RobotCamera
    from actors.teleop import KeyboardControls, TeleopSession
    from pipelines.classifier.labels import sync_success_csv
    from pipelines.dataset import EpisodeRecorder
    from pipelines.runtime.cluster import connect

    sim = args.sim or (args.follower_port is None and args.leader_port is None)
    if not sim and (args.follower_port is None or args.leader_port is None):
        raise RobotError("give both --follower-port and --leader-port (or neither, for --sim)")
    camera_specs = camera_sources(args.camera)
    if args.steps_after_success < 0:
        raise RobotError(f"--steps-after-success {args.steps_after_success}: at least 0")
    if args.format not in (None, V21, V30):
        raise RobotError(f"--format {args.format!r}: {V21} or {V30}")
    try:
        vcodec = None if args.vcodec is None else resolve_video_codec(args.vcodec)
    except DatasetError as e:
        raise RobotError(f"--vcodec: {e}") from None
    if vcodec is None and (note := default_codec_note()):
        print(f"note: {note}", file=sys.stderr)
    if args.task is None:
        if not sim:
            raise RobotError("--task TEXT: say what the recorded episodes do")
        from pipelines.synth import TASK_TEXT

        args.task = TASK_TEXT[args.sim_task]
    connect(args.ray_address)
    robot = None
    actors = []
    try:
        if sim:
            from actors.emulated_robot import EmulatedSO101

            robot = ray.remote(EmulatedSO101).remote(
                task=args.sim_task, seed=args.seed, image_size=args.image_size, hand="expert"
            )
            ports = ray.get(robot.ports.remote())
            follower_port, leader_port = ports["follower"], ports["leader"]
            camera_cls = ray.remote(RobotCamera)
            cameras = {
                CAMERA_PREFIX + k: camera_cls.remote(robot, CAMERA_PREFIX + k)
                for k in ("front", "wrist")
            }
        else:
            follower_port, leader_port = args.follower_port, args.leader_port
            camera_cls = ray.remote(OpenCVCamera)
            cameras = {k: camera_cls.remote(src) for k, src in camera_specs.items()}
        follower = follower_actor().remote(
            follower_port,
            _calibration(args.follower_id, args.calibration_dir, sim),
            max_step=args.max_step,
            **_bus_options(sim),
        )
        leader = leader_actor().remote(
            leader_port,
            _calibration(args.leader_id, args.calibration_dir, sim),
            **_bus_options(sim),
        )
        actors = [follower, leader, *cameras.values()]
        first = ray.get([cam.latest.remote() for cam in cameras.values()])
        sizes = {k: frame[0].shape[:2] for k, frame in zip(cameras, first, strict=True)}
        recorder = EpisodeRecorder(
            args.out,
            fps=args.fps,
            task=args.task,
            joint_names=JOINTS,
            cameras=sizes,
            vcodec=vcodec,
            version=args.format,
        )

        def new_episode():
            if robot is not None:
                ray.get(robot.reset.remote(args.seed + recorder.total_frames))

        session = TeleopSession(
            follower,
            leader,
            cameras,
            recorder,
            fps=args.fps,
            episode_time_s=args.episode_time,
            on_episode_start=new_episode,
            steps_after_success=args.steps_after_success,
        )
        keys = KeyboardControls(session)
        if keys.start():
            print("keys: s success, f failure, r re-record, q stop")
        watcher = _watch_success(robot, session) if robot is not None else None
        try:
            outcomes = session.run(args.episodes)
        except ray.exceptions.RayError as e:  # an arm or camera failed for good: say which
            cause = getattr(e, "cause", None) or e
            raise RobotError(f"teleop stopped: {type(cause).__name__}: {cause}") from e
        finally:
            keys.close()
            if watcher is not None:
                watcher.set()
    finally:
        for actor in actors:  # shutting down: report the session's own error, not these
            with contextlib.suppress(Exception):
                stop = actor.shutdown if hasattr(actor, "shutdown") else actor.close
                ray.get(stop.remote(), timeout=10)
        if robot is not None:
            ray.get(robot.close.remote())
    for o in outcomes:
        jitter = ""
        if o.periods_ms:
            import numpy as np

            dev = np.abs(np.array(o.periods_ms) - 1000 / args.fps)
            p50, p99 = np.percentile(dev, [50, 99])
            jitter = f", period jitter p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        print(f"  episode {o.episode_index}: {o.frames} frames, {o.outcome}{jitter}")
    print(f"Dataset: {args.out}")
    print(f"Success frames: {sync_success_csv(args.out)}")  # the reward classifier's labels
    return 0


def _watch_success(robot, session) -> threading.Event:
    """With the emulated robot, end an episode as a success when the simulator says so."""
    import ray

    stop = threading.Event()

    def watch():
        judged = 0  # the last attempt declared a success
        while not stop.wait(0.1):
            # Read the attempt before asking the simulator: the answer then describes this
            # attempt's world (its reset came first), and `success(attempt=...)` is ignored if
            # the attempt ended meanwhile, so a late answer never ends the next episode.
            attempt = session.attempt
            if attempt == judged or not session.frames_this_episode:
                continue
            if ray.get(robot.state.remote())["success"]:
                session.success(attempt=attempt)
                judged = attempt

    threading.Thread(target=watch, name="success-watch", daemon=True).start()
    return stop


# --------------------------------------------------------------------------- emulate


def emulate(args) -> int:
    from actors.emulated_robot import EmulatedSO101

    robot = EmulatedSO101(
        task=args.sim_task, seed=args.seed, hand=None if args.hand == "none" else args.hand
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


# --------------------------------------------------------------------------- CLI


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(q, arm=True):
        q.add_argument("--calibration-dir", default=str(DEFAULT_CALIBRATION_DIR))
        if arm:
            q.add_argument("--arm-id", default=None, help="name of the arm's calibration")

    q = sub.add_parser("ping", help="handshake with every servo of an arm and read its joints")
    q.add_argument("--port", default=None, help="serial port (default: an emulated arm)")
    q.add_argument("--sim", action="store_true")
    common(q)

    q = sub.add_parser("calibrate", help="record an arm's homing offsets and ranges")
    q.add_argument("--port", default=None, help="serial port (default: an emulated arm)")
    q.add_argument("--sim", action="store_true")
    q.add_argument("--leader", action="store_true", help="(--sim) calibrate the leader")
    common(q, arm=False)
    q.add_argument("--arm-id", required=True, help="name to save the calibration under")

    q = sub.add_parser("teleop", help="drive the follower from the leader and record episodes")
    q.add_argument("out", help="LeRobot v2.1 dataset folder (created, or appended to)")
    q.add_argument("--follower-port", default=None)
    q.add_argument("--leader-port", default=None)
    q.add_argument("--follower-id", default=None, help="follower's calibration name")
    q.add_argument("--leader-id", default=None, help="leader's calibration name")
    q.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="OpenCV camera: front=0, wrist=/dev/video2 (repeatable)",
    )
    q.add_argument("--fps", type=float, default=30.0)
    q.add_argument("--episodes", type=int, default=1)
    q.add_argument("--episode-time", type=float, default=30.0, help="seconds per episode")
    q.add_argument(
        "--task",
        default=None,
        help="what the episodes do (default with --sim: the simulated task's text)",
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
    q.add_argument("--sim-task", default="reach_grasp", choices=["reach_grasp", "pick_lift"])
    q.add_argument("--seed", type=int, default=0)
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
        help="LeRobot layout of a new dataset: v2.1 (default) or v3.0; appending keeps the "
        "dataset's",
    )
    q.add_argument("--ray-address", default=None)
    common(q, arm=False)

    q = sub.add_parser("emulate", help="start emulated follower and leader arms; print ports")
    q.add_argument("--sim-task", default="reach_grasp", choices=["reach_grasp", "pick_lift"])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--hand",
        default="none",
        choices=["none", "expert"],
        help="move the leader like an expert operator would",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel robot") -> int:
    args = build_parser(prog).parse_args(argv)
    commands = {"ping": ping, "calibrate": calibrate, "teleop": teleop, "emulate": emulate}
    try:
        return commands[args.command](args)
    except (RobotError, DatasetError, ClusterError, CalibrationError, BusError, OSError) as e:
        print(f"{prog} {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.robot"))
