"""`ActionSelector`: pick one of n candidate actions and say with which probability.

Seed 000's selection rules, as pure numpy (no Ray, no simulator), each returning the chosen
candidate, its propensity P(a | s) and the metadata the propensity log keeps:

    random          P(a | s) = 1 / n
    epsilon_greedy  P(a | s) = epsilon / n + (1 - epsilon) * P_learned(a | s)
    learned         P_learned(a | s) = softmax(scores / temperature)

The scores come from a **scorer**, `scorer(state, candidates) -> n floats` (higher is
better): the trained selector of `flywheel train-selector` (its logit of P(approve | state,
candidate)), or `PolicyDistanceScorer` (minus a policy's distance to its own action).

**Resampling after an undo** is exact: once the candidates in `excluded` have been executed and
rejected, the next one is drawn among the others with

    P(a | excluded) = p(a) / (1 - sum_{e in excluded} p(e)),

p being the rule's unconditional probabilities at that state (1 / (n - k) for random). For
`learned` the conditional is computed as a softmax over the remaining scores, which is the same
quantity without the cancellation of 1 - sum(p) when the excluded candidates held nearly all the
mass. The propensity returned is the conditional one (the probability with which this draw was
made), so that importance weights of resampled frames use the probability their action really
had; the unconditional one is in the metadata (`unconditional_propensity`).

Draws use the selector's own `numpy.random.Generator` (`seed`): the same seed and the same
calls give the same choices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

MODES = ("random", "epsilon_greedy", "learned")

Scorer = Callable[[np.ndarray | None, np.ndarray], np.ndarray]


class SelectorError(ValueError):
    """A selector asked for something it cannot do (bad mode, epsilon, candidate set)."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise SelectorError(f"unknown selector mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - np.max(z)
    e = np.exp(z)
    return e / e.sum()


def conditional_probabilities(p: np.ndarray, excluded: Sequence[int]) -> np.ndarray:
    """P(a | excluded) = p(a) / (1 - sum p(excluded)) for a not excluded, 0 for the excluded."""
    p = np.asarray(p, dtype=np.float64)
    out = p.copy()
    idx = list(excluded)
    out[idx] = 0.0
    # 1 - sum p(excluded) is the mass of the others: summing it directly is the same quantity
    # and keeps the conditionals summing to 1 (and a last candidate at exactly 1) in floats.
    remaining = float(out.sum())
    if remaining <= 0.0:
        raise SelectorError("the excluded candidates hold all the probability")
    return out / remaining


@dataclass
class Selection:
    """One draw: `index` into the candidates, the `action`, its `propensity` (the probability
    this draw had, conditional on the exclusions), every candidate's probability for this draw
    (`probabilities`, zeros for the excluded) and the log's metadata."""

    index: int
    action: np.ndarray
    propensity: float
    probabilities: np.ndarray
    metadata: dict = field(default_factory=dict)


class ActionSelector:
    """Seed 000's selector (module docstring); `select(candidates, state, excluded)`."""

    def __init__(
        self,
        mode: str = "random",
        *,
        epsilon: float = 0.1,
        temperature: float = 1.0,
        scorer: Scorer | None = None,
        seed: int | None = None,
    ):
        self.mode = check_mode(mode)
        if not 0.0 <= epsilon <= 1.0:
            raise SelectorError(f"epsilon {epsilon}: between 0 and 1")
        if not temperature > 0.0:
            raise SelectorError(f"temperature {temperature}: must be > 0")
        if mode != "random" and scorer is None:
            raise SelectorError(f"selector mode {mode!r} needs a scorer")
        self.epsilon = float(epsilon)
        self.temperature = float(temperature)
        self.scorer = scorer
        self.rng = np.random.default_rng(seed)

    def scores(self, candidates: np.ndarray, state: np.ndarray | None) -> np.ndarray | None:
        if self.mode == "random":
            return None
        scores = np.asarray(self.scorer(state, candidates), dtype=np.float64).reshape(-1)
        if scores.shape != (len(candidates),) or not np.all(np.isfinite(scores)):
            raise SelectorError(
                f"the scorer returned {scores.shape} scores for {len(candidates)} candidates "
                "(one finite score each expected)"
            )
        return scores

    def probabilities(
        self,
        candidates: np.ndarray,
        state: np.ndarray | None = None,
        excluded: Sequence[int] = (),
        scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(unconditional p, conditional p given `excluded`) over the candidates."""
        n = len(candidates)
        if n < 1:
            raise SelectorError("no candidate actions")
        excluded = sorted(set(int(e) for e in excluded))
        if any(not 0 <= e < n for e in excluded):
            raise SelectorError(f"excluded {excluded}: indices of {n} candidates expected")
        if len(excluded) >= n:
            raise SelectorError(f"all {n} candidates were already executed")
        if scores is None:
            scores = self.scores(candidates, state)
        uniform = np.full(n, 1.0 / n)
        if self.mode == "random":
            p = uniform
        else:
            learned = softmax(scores, self.temperature)
            p = (
                learned
                if self.mode == "learned"
                else self.epsilon * uniform + (1.0 - self.epsilon) * learned
            )
        if not excluded:
            return p, p.copy()
        if self.mode == "learned":  # softmax over the remaining scores: the same, stably
            keep = np.setdiff1d(np.arange(n), excluded)
            cond = np.zeros(n)
            cond[keep] = softmax(scores[keep], self.temperature)
            return p, cond
        return p, conditional_probabilities(p, excluded)

    def select(
        self,
        candidates: np.ndarray,
        state: np.ndarray | None = None,
        excluded: Sequence[int] = (),
    ) -> Selection:
        candidates = np.asarray(candidates)
        if candidates.ndim != 2:
            raise SelectorError(f"candidates of shape {candidates.shape}: n x action_dim expected")
        scores = self.scores(candidates, state)
        p, cond = self.probabilities(candidates, state, excluded, scores)
        index = int(self.rng.choice(len(candidates), p=cond))
        excluded = sorted(set(int(e) for e in excluded))
        metadata = {
            "selector_mode": self.mode,
            "epsilon": self.epsilon if self.mode == "epsilon_greedy" else None,
            "temperature": self.temperature if self.mode != "random" else None,
            "resampled": bool(excluded),
            "num_candidate_actions": len(candidates),
            "num_already_executed": len(excluded),
            "already_executed": excluded,
            "unconditional_propensity": float(p[index]),
            "candidate_propensities": [float(x) for x in cond],
            "candidate_scores": None if scores is None else [float(s) for s in scores],
        }
        return Selection(index, candidates[index].copy(), float(cond[index]), cond, metadata)


class PolicyDistanceScorer:
    """Scores candidates by minus their distance to a policy's own action at the state.

    `policy_action(state) -> action`; score = -||candidate - action|| / scale (`scale` in action
    units: the distance that costs one unit of score, so the softmax temperature is relative to
    it). The same softmax is the policy's discrete distribution over a candidate set that
    `train-policy --importance-weights` uses (`candidate_softmax`).
    """

    def __init__(self, policy_action: Callable[[np.ndarray | None], np.ndarray], scale: float):
        if not scale > 0:
            raise SelectorError(f"scale {scale}: must be > 0")
        self.policy_action = policy_action
        self.scale = float(scale)

    def __call__(self, state: np.ndarray | None, candidates: np.ndarray) -> np.ndarray:
        action = np.asarray(self.policy_action(state), dtype=np.float64)
        return -distance_scores(candidates, action) / self.scale


def distance_scores(candidates: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Euclidean distance of each candidate (n x d) to one action (d)."""
    diff = np.asarray(candidates, dtype=np.float64) - np.asarray(action, dtype=np.float64)
    return np.sqrt((diff**2).sum(axis=-1))
