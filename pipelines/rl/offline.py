"""The offline buffer's seed: a LeRobot dataset (demos from `flywheel synth`, teleop, or an
earlier HIL-SERL run's recording) as replay episodes.

* **Checked first** (`check_offline_dataset`), one line naming the file for each problem: the
  cameras the agent sees must all be in the dataset; `observation.state` must have the env's 6
  joints; `action` must be either end-effector deltas (4 values, `dx, dy, dz, gripper` in m and
  0..100: what a HIL-SERL recording holds) or joint targets (6 values: synth and teleop), which
  are converted by forward kinematics (`pipelines.simulator.wrappers.ee_delta_from_joint_targets`);
  any other action dimension is refused.
* **Rewards and ends.** `next.reward` as recorded (the simulator's sparse reward; with
  `--reward classifier` the demos keep their recorded rewards); the first rewarded frame ends the
  episode as a true terminal (success ends reach-and-grasp). A LeRobot episode has no frame after
  its last action, so an episode that did not end in success loses its last transition (its
  final observation becomes the bootstrap state of the one before), and a successful one gets
  a copy of its last observation as the (never bootstrapped) final frame.
* **Flags.** `complementary_info.is_intervention` (or `data_type == "intervention"`) marks
  interventions; `data_type == "demo"` marks demos, and a dataset without `data_type` counts as
  demos throughout: the mask `--bc-on interventions+demos` needs, stored explicitly because
  demo datasets carry no intervention flag.
* **Units.** The env's joints are in degrees (the gripper 0..100). The dataset's units come
  from its info.json, else `--offline-units`, else its values (`pipelines.dataset.units`); a
  LeRobot recording in range_m100_100 is converted to degrees with the recording arm's
  calibration (`--offline-calibration FILE|ID`), and refused in one line without one.
* Images are resized to the env's image size; with a frozen encoder only its features are kept.
"""

from __future__ import annotations

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.dataset.calibration import load_calibration_option
from pipelines.dataset.units import JointConverter, dataset_units
from pipelines.rl.frames import STATE_KEY
from pipelines.rl.replay import Episode
from pipelines.simulator.env import DEFAULT_WORKSPACE
from pipelines.simulator.wrappers import ee_delta_from_joint_targets, normalize_ee_action
from pipelines.vision.images import resize


def _names(feature: dict) -> list[str]:
    names = feature.get("names")
    if isinstance(names, dict):  # LeRobot sometimes nests: {"motors": [...]}
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, list) else []


def action_convention(ds: LeRobotDataset) -> str:
    """ "ee_delta" or "joint", from the `action` feature; a DatasetError for anything else."""
    info = f"{ds.root}/meta/info.json"
    feature = ds.features.get("action")
    if feature is None:
        raise DatasetError(f"{info}: no 'action' feature")
    dim = int(np.prod(feature.get("shape") or [0]))
    if dim == 4:
        return "ee_delta"
    if dim == 6:
        return "joint"
    raise DatasetError(
        f"{info}: action has {dim} dimensions; the env acts in 4 (end-effector deltas "
        "dx, dy, dz, gripper) and joint-target datasets (6) are converted"
    )


def offline_converters(
    ds: LeRobotDataset, units: str | None, calibration: str | None
) -> tuple[JointConverter, JointConverter | None]:
    """The dataset's state and (joint) action converters to the env's units (module
    docstring); `units`: --offline-units, `calibration`: --offline-calibration."""
    found = dataset_units(ds, units, "--offline-units")
    arm = None
    if calibration is not None:
        arm = load_calibration_option(calibration, "--offline-calibration")
    return found.converters(
        arm,
        f"{ds.root}/meta/info.json",
        "give --offline-calibration FILE|ID (the recording arm's calibration)",
    )


def check_offline_dataset(
    path: str, cameras: list[str], units: str | None = None, calibration: str | None = None
) -> LeRobotDataset:
    """The dataset, if HIL-SERL can seed its offline buffer with it (module docstring);
    `units` and `calibration`: --offline-units and --offline-calibration."""
    ds = LeRobotDataset(path)
    info = f"{ds.root}/meta/info.json"
    have = ds.camera_keys
    missing = [c for c in cameras if c not in have]
    if missing:
        raise DatasetError(
            f"{info}: no camera {missing[0]!r} (the dataset has {have or 'none'}; the env's "
            f"cameras are {cameras})"
        )
    state = ds.features.get(STATE_KEY)
    if state is None or int(np.prod(state.get("shape") or [0])) != 6:
        shape = None if state is None else state.get("shape")
        raise DatasetError(f"{info}: observation.state {shape}, the env has 6 joints")
    action_convention(ds)
    if not ds.episode_indices:
        raise DatasetError(f"{ds.root}: no episodes")
    offline_converters(ds, units, calibration)
    return ds


def _column(table, name: str) -> np.ndarray:
    return np.stack(table.column(name).to_numpy(zero_copy_only=False))


def load_offline_episodes(
    ds: LeRobotDataset,
    cameras: list[str],
    image_size: int,
    max_ee_step: float,
    encoder=None,
    keep_images: bool = True,
    workspace=None,
    units: str | None = None,
    calibration: str | None = None,
):
    """Yield each dataset episode as a replay `Episode` (module docstring); `units` and
    `calibration`: --offline-units and --offline-calibration."""
    convention = action_convention(ds)
    state_units, action_units = offline_converters(ds, units, calibration)
    workspace = workspace or DEFAULT_WORKSPACE
    for e in ds.episode_indices:
        names = ["observation.state", "action", "next.reward"]
        table = ds.read_episode(e)
        have = set(table.column_names)
        for name in names:
            if name not in have:
                raise DatasetError(f"{ds.relative(ds.data_file(e))}: missing column {name!r}")
        state = state_units.to_internal(_column(table, STATE_KEY).astype(np.float64))
        state = state.astype(np.float32)
        action = _column(table, "action").astype(np.float64)
        if action_units is not None:
            action = action_units.to_internal(action)
        reward = table.column("next.reward").to_numpy(zero_copy_only=False).astype(np.float32)
        n = len(state)
        if n == 0:
            continue
        if "complementary_info.is_intervention" in have:
            interv = table.column("complementary_info.is_intervention").to_numpy(
                zero_copy_only=False
            )
            interv = np.asarray(interv, dtype=bool)
        elif "data_type" in have:
            interv = np.asarray(table.column("data_type").to_pylist()) == "intervention"
        else:
            interv = np.zeros(n, dtype=bool)
        if "data_type" in have:
            demo = np.asarray(table.column("data_type").to_pylist()) == "demo"
        else:
            demo = np.ones(n, dtype=bool)
        if convention == "joint":
            raw = ee_delta_from_joint_targets(state, action, max_ee_step, workspace)
        else:
            raw = action.astype(np.float32)
        normalized = normalize_ee_action(raw, max_ee_step)
        rewarded = np.flatnonzero(reward > 0)
        terminated = len(rewarded) > 0
        if terminated:
            t = int(rewarded[0]) + 1  # transitions kept; final frame: a copy of the last
            frame_idx = np.r_[np.arange(t), t - 1]
        else:
            t = n - 1
            frame_idx = np.arange(n)
        if t < 1:
            continue
        obs = {STATE_KEY: state[frame_idx]}
        images = {}
        for key in cameras:
            frames = [resize(f, image_size) for f in ds.iter_camera_frames(e, key)]
            if len(frames) < n:
                raise DatasetError(
                    f"{ds.root}: episode {e}: camera {key} has {len(frames)} frames, the data {n}"
                )
            images[key] = np.stack(frames)[frame_idx]
        if encoder is not None:
            obs["features"] = encoder.features(images).astype(np.float16)
        if keep_images or encoder is None:
            obs.update(images)
        yield Episode(
            obs=obs,
            action=normalized[:t],
            reward=reward[:t],
            terminated=terminated,
            intervention=interv[:t],
            demo=demo[:t],
            info={"dataset_episode": e, "success": terminated, "length": t},
        )
