"""The simulator's task table: every simulated task, in one place.

Each `SimTask` names its Gymnasium id, the dataset's task text, its stages, the time limit
after which the env truncates, how the dense progress weighs the stage scores, and the
cameras an episode records. Everything else (the world, the env, synth, collect, HIL-SERL,
evaluation, the robot's simulated mode) looks tasks up here: `get_task(name)`, `TASKS`,
`TASK_NAMES`, `DEFAULT_TASK`.
"""

from __future__ import annotations

from dataclasses import dataclass

FRONT_CAMERA = "observation.images.front"
WRIST_CAMERA = "observation.images.wrist"
CAMERAS = (FRONT_CAMERA, WRIST_CAMERA)


@dataclass(frozen=True)
class SimTask:
    """One simulated task (see the module docstring)."""

    name: str
    gym_id: str  # registered as flywheel/<gym_id>
    text: str  # the dataset's task text
    stages: tuple[str, ...]
    time_limit_s: float  # seconds of sim time before the env truncates
    progress_weights: tuple[float, float, float]  # dense progress = w . (reach, grasp, lift)
    cameras: tuple[str, ...] = CAMERAS

    @property
    def lifts(self) -> bool:
        """Whether success needs the held cube lifted (not only held)."""
        return "lift" in self.stages

    def episode_steps(self, fps: int) -> int:
        """Control steps in the time limit at `fps` (the env's default `max_episode_steps`)."""
        return round(self.time_limit_s * fps)

    def progress(self, reach: float, grasp: float, lift: float) -> float:
        """Dense progress from the (reach, grasp, lift) stage scores."""
        w_reach, w_grasp, w_lift = self.progress_weights
        if not self.lifts:
            return w_reach * reach + w_grasp * grasp
        return w_reach * reach + w_grasp * grasp + w_lift * lift


REACH_GRASP = SimTask(
    name="reach_grasp",
    gym_id="SO101ReachGrasp-v0",
    text="reach and grasp the red cube",
    stages=("reach", "grasp"),
    time_limit_s=20.0,  # 200 steps at 10 fps
    progress_weights=(0.6, 0.4, 0.0),
)
PICK_LIFT = SimTask(
    name="pick_lift",
    gym_id="SO101PickLift-v0",
    text="pick up the red cube and lift it",
    stages=("reach", "grasp", "lift"),
    time_limit_s=25.0,  # 250 steps at 10 fps
    progress_weights=(0.45, 0.25, 0.3),
)
TASKS: dict[str, SimTask] = {t.name: t for t in (REACH_GRASP, PICK_LIFT)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
DEFAULT_TASK = REACH_GRASP.name


def get_task(name: str) -> SimTask:
    """The task called `name`; ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None


def task_of_text(texts) -> str | None:
    """The name of the first task whose text is among `texts` (None if none is)."""
    texts = set(texts)
    for task in TASKS.values():
        if task.text in texts:
            return task.name
    return None
