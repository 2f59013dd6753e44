"""From the losses of a learning-rate range test to a suggested rate: the rules of `tlcli
lr-find`. Plain NumPy: no TensorFlow here.

The losses are smoothed by a centred Gaussian average (`smooth`). A running average, the usual
smoothing while the test runs, trails the curve: with beta 0.98 by tens of steps, which at 100
steps over seven decades moves the descent by a decade or more. The test is over when a rule
reads the curve, so the average can look both ways and has no lag.

- `descent` (the default): halfway down the descent. The start level is the smoothed loss over
  the first tenth of the test, the descent ends at the lowest smoothed loss, and the suggestion is
  the rate where the smoothed loss, on its way down to that lowest point, crosses the level halfway
  between the two. A descent shaped like a sigmoid in log(rate) falls fastest at its midpoint,
  and a level crossing needs no derivative of a noisy curve, so the noise of a flat start (where a
  "steepest slope" rule lands) cannot pull it there.
  When the loss does not fall by more than its noise (a model that already fits, as when
  unfreezing), the suggestion is the rate where the climb that ends the test starts (where the
  smoothed loss last left its start level): the fastest training that does not yet undo what
  the model learnt. (A tenth of it, the habit for a rate that blows the loss up, trains too
  little in a few epochs: README, "Finding the learning rate".)
- `minimum`: a tenth of the rate at the lowest smoothed loss (Smith, 2017).

>>> rates = np.geomspace(1e-7, 1, 100)
>>> falling = 2.3 - 1.8 / (1 + np.exp(-4 * (np.log10(rates) + 3)))  # halfway down at 1e-3
>>> suggest(rates, falling, "descent").rate
0.0011
>>> flat_then_climbing = 0.3 + np.maximum(0, np.log10(rates) + 4)  # climbs from 1e-4
>>> print(suggest(rates, flat_then_climbing, "descent").why)
where the loss starts to climb: it did not fall
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tlcli.errors import ConfigError

Rule = Literal["descent", "minimum"]
SMOOTHING_DECADES = 0.2  # the Gaussian's standard deviation, in decades of rate
SIGNIFICANT = 4.0  # standard errors of the smoothed loss: a smaller fall or climb is noise
NEGLIGIBLE = 0.02  # nor is a fall or climb of less than this fraction of the start level


@dataclass(frozen=True)
class Suggestion:
    rate: float
    why: str  # the rule that picked it, in words


def smooth(rates: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """A centred Gaussian moving average of the losses (SMOOTHING_DECADES wide, at least a
    step), renormalised at the ends."""
    sigma = _sigma_in_steps(rates)
    steps = np.arange(len(losses))
    weights = np.exp(-0.5 * ((steps[:, None] - steps[None, :]) / sigma) ** 2)
    return (weights @ np.asarray(losses, dtype=float)) / weights.sum(axis=1)


def suggest(rates, losses, rule: Rule = "descent") -> Suggestion:
    """The suggested rate for a range test's `losses` (one per rate, rates rising)."""
    rates, losses = np.asarray(rates, dtype=float), np.asarray(losses, dtype=float)
    if rule not in ("descent", "minimum"):
        raise ConfigError(f"rule '{rule}': expected descent or minimum")
    if len(rates) < 5:
        return Suggestion(round_rate(rates[0]), "the test stopped too soon: the lowest rate tried")
    smoothed = smooth(rates, losses)
    lowest = int(np.argmin(smoothed))
    if rule == "minimum":
        at = float(rates[lowest])
        if at / 10 < rates[0]:
            return Suggestion(round_rate(rates[0]), "the loss did not fall: the lowest rate tried")
        return Suggestion(
            round_rate(at / 10), f"a tenth of the rate at the lowest smoothed loss ({at:.2g})"
        )
    start = float(np.median(smoothed[: max(1, len(rates) // 10)]))
    noise = max(SIGNIFICANT * _standard_error(rates, losses, smoothed), NEGLIGIBLE * abs(start))
    if start - smoothed[lowest] > noise:
        halfway = (start + smoothed[lowest]) / 2
        above = np.flatnonzero(smoothed[:lowest] >= halfway)
        at = int(above[-1]) + 1 if len(above) else 0
        return Suggestion(
            round_rate(rates[at]),
            f"halfway down the loss's descent, from {start:.3g} to {smoothed[lowest]:.3g}",
        )
    # the climb that ends the test: noise may cross the line before it
    settled = np.flatnonzero(smoothed <= start + noise)
    if len(settled) == 0 or settled[-1] == len(rates) - 1:
        return Suggestion(
            round_rate(rates[0]), "the loss neither fell nor climbed: the lowest rate tried"
        )
    return Suggestion(
        round_rate(rates[settled[-1] + 1]), "where the loss starts to climb: it did not fall"
    )


def round_rate(rate: float) -> float:
    """Two significant digits: a rate to type into a config."""
    return float(f"{float(rate):.2g}")


def _sigma_in_steps(rates: np.ndarray) -> float:
    if len(rates) < 2:
        return 1.0
    decades_per_step = math.log10(rates[-1] / rates[0]) / (len(rates) - 1)
    return max(1.0, SMOOTHING_DECADES / decades_per_step)


def _standard_error(rates: np.ndarray, losses: np.ndarray, smoothed: np.ndarray) -> float:
    """Of the smoothed loss: the losses' spread about it (median absolute deviation, robust to
    the spikes of a diverging end) over the Gaussian's effective number of steps."""
    residuals = losses - smoothed
    spread = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    effective_steps = 2 * math.sqrt(math.pi) * _sigma_in_steps(rates)
    return spread / math.sqrt(effective_steps)
