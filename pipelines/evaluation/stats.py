"""Success statistics for paired policy evaluations (pure): Wilson intervals, McNemar tests.

* **Wilson score interval** for k successes in n episodes (95 %: z = 1.959964); unlike the
  normal approximation it stays inside [0, 1] and is sensible at 0 or n successes.
* **McNemar's exact test** for two policies run on the same seeds: only the discordant seeds
  count (b: only the first succeeded, c: only the second); under the null hypothesis each is
  a fair coin, so p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)]).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_counts(first: list[bool], second: list[bool]) -> dict[str, int]:
    """Seeds where both, only the first, only the second, or neither succeeded."""
    if len(first) != len(second):
        raise ValueError(f"unpaired outcomes: {len(first)} and {len(second)} episodes")
    both = sum(a and b for a, b in zip(first, second, strict=True))
    only_first = sum(a and not b for a, b in zip(first, second, strict=True))
    only_second = sum(b and not a for a, b in zip(first, second, strict=True))
    return {
        "both": both,
        "only_first": only_first,
        "only_second": only_second,
        "neither": len(first) - both - only_first - only_second,
    }
