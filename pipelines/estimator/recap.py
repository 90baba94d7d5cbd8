"""What the `recap` variant takes from a dataset besides frames: outcomes, targets, tasks, T_max.

Training (`training_setup`): every episode's outcome (`episode_success`; one without is refused
in one line naming `flywheel outcomes`, or taken as a failure with `--default-outcome
failure`), its task text (the first its metadata lists), T_max per task over the run's
episodes, the value targets (`pipelines.recap.targets`), and the state's normalization. The
checkpoint keeps what estimation needs (`RecapSetup.meta`).

Estimation (`estimation_setup`): each episode's return-to-go, for the N-step advantage past
the episode's end, with the checkpoint's T_max and c_fail per task (the dataset's T_max for a
task the checkpoint never saw; never below the episode's own length, so that its targets stay
valid), and what the output's manifest says about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.estimator.data import state_normalization
from pipelines.estimator.value import n_step_advantages, outcomes_digest
from pipelines.recap.outcomes import episode_task
from pipelines.recap.targets import (
    MissingOutcomeError,
    episode_targets,
    resolve_outcomes,
    task_max_lengths,
)
from pipelines.vision.prompts import tokenize


def dataset_outcomes(
    ds: LeRobotDataset, episodes: list[int], default_outcome: str | None
) -> dict[int, bool]:
    """The outcome each episode is taken with; a one-line DatasetError for episodes without
    one (unless `default_outcome="failure"`), naming how to add them."""
    try:
        taken = resolve_outcomes(
            [ds.episode_outcome(e) for e in episodes],
            default_outcome,
            episodes=episodes,
            dataset=str(ds.root),
        )
    except MissingOutcomeError as e:
        raise DatasetError(str(e)) from None
    return dict(zip(episodes, taken, strict=True))


def outcome_summary(
    ds: LeRobotDataset, outcomes: dict[int, bool], default_outcome: str | None
) -> dict:
    """Counts of the outcomes taken, how many were defaulted, and their digest."""
    defaulted = sum(ds.episode_outcome(e) is None for e in outcomes)
    won = sum(outcomes.values())
    return {
        "success": won,
        "failure": len(outcomes) - won,
        "defaulted": defaulted,
        "default_outcome": default_outcome,
        "digest": outcomes_digest(outcomes),
    }


@dataclass
class RecapSetup:
    """What recap training takes from the dataset (the driver computes it, workers read it)."""

    targets: dict[int, np.ndarray]  # every run episode's value targets
    tasks: dict[int, str]
    t_max: dict[str, int]
    state: dict  # mean, std, source
    c_fail_coef: float
    default_outcome: str | None
    trained_outcomes: dict  # outcome_summary of the training episodes
    outcomes: dict[int, bool] = field(repr=False, default_factory=dict)

    def resume_key(self) -> dict:
        """What a rerun of the same run must keep (else it trains another value)."""
        return {
            "c_fail_coef": self.c_fail_coef,
            "default_outcome": self.default_outcome,
            "outcomes_digest": self.trained_outcomes["digest"],
        }

    def meta(self, bins: int) -> dict:
        """The checkpoint's `recap` section: what estimation needs."""
        return {
            **self.resume_key(),
            "bins": bins,
            "t_max": dict(self.t_max),
            "state_normalization": self.state,
            "outcomes": self.trained_outcomes,
        }

    def uniform_warning(self, train: list[int]) -> str | None:
        """One line when every training episode has the same outcome."""
        taken = {self.outcomes[e] for e in train}
        if len(taken) != 1:
            return None
        what = "success" if taken.pop() else "failure"
        return (
            f"warning: every training episode is a {what}: the value can then only learn "
            "progress, not which actions lead to success"
        )


def training_setup(
    ds: LeRobotDataset,
    episodes: list[int],
    train: list[int],
    c_fail_coef: float,
    default_outcome: str | None,
) -> RecapSetup:
    """Outcomes, tasks, T_max per task and targets of the run's `episodes`, and the state's
    normalization (meta/stats.json, or the `train` episodes)."""
    outcomes = dataset_outcomes(ds, episodes, default_outcome)
    tasks = {e: episode_task(ds, e) for e in episodes}
    lengths = {e: ds.episode_length(e) for e in episodes}
    t_max = task_max_lengths([lengths[e] for e in episodes], [tasks[e] for e in episodes])
    targets = {
        e: episode_targets(lengths[e], outcomes[e], t_max[tasks[e]], c_fail_coef).astype(np.float32)
        for e in episodes
    }
    trained = outcome_summary(ds, {e: outcomes[e] for e in train}, default_outcome)
    return RecapSetup(
        targets,
        tasks,
        t_max,
        state_normalization(ds, train),
        float(c_fail_coef),
        default_outcome,
        trained,
        outcomes,
    )


@dataclass
class EpisodeReturns:
    """One episode's task word ids, return-to-go (its targets) and per-step reward."""

    tokens: np.ndarray  # 1 x L
    returns: np.ndarray
    step_reward: float


@dataclass
class RecapEstimate:
    """The recap head's columns of each episode (`columns`), and the manifest's section."""

    n_step: int
    episodes: dict[int, EpisodeReturns]
    manifest: dict

    def columns(
        self, model, episode: int, features: np.ndarray, state: np.ndarray
    ) -> dict[str, np.ndarray]:
        """`absolute_value` V(s_t) and `absolute_advantage` (N-step) of one episode."""
        info = self.episodes[episode]
        n = len(features)
        feats = torch.from_numpy(features)[:, None]
        st = torch.from_numpy(state.astype(np.float32))[:, None]
        tokens = torch.from_numpy(np.repeat(info.tokens, n, axis=0))
        with torch.no_grad():
            values = model.value(feats, st, tokens).numpy().astype(np.float64)
        advantage = n_step_advantages(values, info.returns, info.step_reward, self.n_step)
        return {"absolute_value": values.astype(np.float32), "absolute_advantage": advantage}


def estimation_setup(
    ds: LeRobotDataset,
    recap_meta: dict,
    vocab: int,
    episodes: list[int],
    n_step: int,
    default_outcome: str | None,
) -> RecapEstimate:
    """Each episode's returns with the checkpoint's T_max and c_fail per task (module
    docstring); a one-line DatasetError for episodes without an outcome."""
    outcomes = dataset_outcomes(ds, episodes, default_outcome)
    coef = float(recap_meta["c_fail_coef"])
    seen = {str(k): int(v) for k, v in recap_meta.get("t_max", {}).items()}
    everything = ds.episode_indices
    dataset_t_max = task_max_lengths(
        [ds.episode_length(e) for e in everything], [episode_task(ds, e) for e in everything]
    )
    out, used = {}, {}
    for e in episodes:
        task, n = episode_task(ds, e), ds.episode_length(e)
        t_max = max(seen.get(task, dataset_t_max.get(task, n)), n)
        used[task] = max(used.get(task, 0), t_max)
        out[e] = EpisodeReturns(
            tokenize([task], vocab),
            episode_targets(n, outcomes[e], t_max, coef),
            -1.0 / (t_max + coef * t_max),
        )
    summary = outcome_summary(ds, outcomes, default_outcome)
    manifest = {
        "n_step": n_step,
        "c_fail_coef": coef,
        "t_max": dict(sorted(used.items())),
        "outcomes": {
            "source": "episode_success"
            + (", else failure (--default-outcome)" if default_outcome else ""),
            **summary,
        },
    }
    return RecapEstimate(n_step, out, manifest)
