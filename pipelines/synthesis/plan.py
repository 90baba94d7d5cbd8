"""Which controller rolls out which episode, with which seed, and whether the operator watches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthesis.config import SynthConfig

DEMONSTRATORS = ("expert", "hesitant")  # data_type "demo"; the others stand in for policies


@dataclass(frozen=True)
class EpisodePlan:
    index: int
    seed: int
    controller: str
    supervised: bool  # the simulated operator watches and takes over when it drifts


def plan_episodes(cfg: SynthConfig, mix: dict[str, float]) -> list[EpisodePlan]:
    """Which controller rolls out which episode, with which seed; a function of `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    names = list(mix)
    picks = rng.choice(len(names), size=cfg.episodes, p=[mix[n] for n in names])
    watch = rng.random(cfg.episodes) < cfg.operator
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.episodes)
    return [
        EpisodePlan(
            index=i,
            seed=int(seeds[i]),
            controller=names[picks[i]],
            supervised=bool(watch[i]) and names[picks[i]] not in DEMONSTRATORS,
        )
        for i in range(cfg.episodes)
    ]
