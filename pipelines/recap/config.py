"""`OutcomesConfig`: the options of `flywheel outcomes`."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.flags import FlagConfig, flag

SUCCESS_FRAMES = 3  # --success-frames' default, as the demo's HIL-SERL run asks for


@dataclass
class OutcomesConfig(FlagConfig):
    dataset: str = flag(
        help="LeRobot v2.1 or v3.0 dataset folder (changed in place)", positional=True
    )
    source: str = flag(
        help=(
            "where the outcomes come from: csv:FILE (columns episode_index,success; 1/0 or "
            "true/false), reward (any next.reward > 0 in the episode), "
            "classifier:CKPT_OR_URL (the reward classifier over the episode's frames: a "
            "checkpoint or run folder of flywheel train-classifier, or the http(s) URL of "
            "flywheel serve-reward, token from FLYWHEEL_REWARD_TOKEN), or "
            "set:3,5,9=success (or =failure)"
        ),
        option="from",
        metavar="SOURCE",
    )
    success_frames: int = flag(
        SUCCESS_FRAMES,
        "classifier source: an episode succeeded when K consecutive frames are positive",
        metavar="K",
    )
    dry_run: bool = flag(False, "print the counts, write nothing")
