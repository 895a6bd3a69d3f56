"""Drawing from weighted choices with the generator's one random stream.

Every draw goes through ``random.Random.random`` so that a seed fixes the bytes; the
order of draws is part of the output, which is why helpers here never draw more or
fewer numbers than the expressions they replace.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


@dataclass(frozen=True, slots=True)
class WeightedChoice(Generic[T]):
    """One item at a time, with probability proportional to its weight: what
    ``Random.choices(items, cum_weights=...)[0]`` does (same single draw), without
    building a list per pick in the generator's innermost loops."""

    items: Sequence[T]
    cumulative_weights: list[float]

    @classmethod
    def of(cls, items: Sequence[T], weights: Iterable[float]) -> WeightedChoice[T]:
        return cls(items, cumulative(weights))

    def index(self, random: Callable[[], float]) -> int:
        weights = self.cumulative_weights
        return bisect_right(weights, random() * weights[-1])

    def draw(self, random: Callable[[], float]) -> T:
        weights = self.cumulative_weights
        return self.items[bisect_right(weights, random() * weights[-1])]


def poisson(mean: float) -> WeightedChoice[int]:
    """How many of something (0, 1, 2, ...) for a Poisson distribution of this mean,
    as cumulative probabilities (one uniform draw, compared directly)."""
    out, p, acc = [], math.exp(-mean), 0.0
    for k in range(0, 200):
        acc += p
        out.append(acc)
        if acc > 1 - 1e-12:
            break
        p *= mean / (k + 1)
    out[-1] = 1.0
    return WeightedChoice(range(len(out)), out)
