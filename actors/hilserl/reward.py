"""The served reward classifier as a collector's reward: `RewardSource`, `SuccessStreak`."""

from __future__ import annotations

from actors.hilserl.config import CollectorConfig
from serving.client import HandleRewardClient, HTTPRewardClient


class SuccessStreak:
    """A success only after `frames` consecutive frames the classifier called one.

    A policy that meets a learned reward searches for the frames the classifier gets wrong: in
    the simulator, a single frame of the closing gripper with the cube, far below, centered
    between its fingers in the wrist camera, where one frame later the classifier says no
    again. Asking for the verdict on 2-3 frames in a row (`--success-frames`) takes such
    one-frame flickers away; a true grasp holds for as long as the cube stays up.
    """

    def __init__(self, frames: int = 1):
        self.frames = int(frames)
        self.run = 0

    def reset(self) -> None:
        self.run = 0

    def update(self, success: bool) -> bool:
        self.run = self.run + 1 if success else 0
        return self.run >= self.frames


class RewardSource:
    """The served classifier's reward for a frame: 1.0 when it says success (on the last
    `success_frames` frames in a row, `SuccessStreak`), else 0.0; `reset()` at each episode.

    Through the Serve application's handle (`reward_app`) or its HTTP endpoint (`reward_url`),
    with the client's retries; only the cameras the classifier takes are sent.
    """

    def __init__(self, cfg: CollectorConfig):
        # patient: a busy endpoint (or a replica being replaced) answers late, not wrongly
        patience = {"timeout_s": 30.0, "deadline_s": 120.0}
        if cfg.reward_url:
            self.client = HTTPRewardClient(cfg.reward_url, **patience)
            info = self.client.info()
        else:
            self.client = HandleRewardClient(app_name=cfg.reward_app, **patience)
            info = self.client.handle.info.remote().result(timeout_s=60)
        self.cameras = list(info["cameras"])
        self.streak = SuccessStreak(cfg.success_frames)

    def reset(self) -> None:
        self.streak.reset()

    def __call__(self, obs: dict) -> float:
        answer = self.client.score({k: obs[k] for k in self.cameras})
        return 1.0 if self.streak.update(bool(answer["success"])) else 0.0
