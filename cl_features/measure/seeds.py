"""Numbers measured once per seed -> mean, spread and a 95% interval across seeds.

The interval is Student's t: mean +- t(0.975, n - 1) * sd / sqrt(n) with the sample sd (ddof=1); with 3 seeds
t = 4.30, so it is wide by design. One seed gives sd 0 and no interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def summary(values: Sequence[float], level: float = 0.95) -> dict:
    """{'mean', 'sd', 'ci': [low, high] or None, 'values'} of the finite values (NaN ones are left out)."""
    v = np.asarray([float(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "ci": None, "values": [float(x) for x in values]}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    ci = None
    if v.size > 1:
        half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * sd / np.sqrt(v.size)
        ci = [mean - half, mean + half]
    return {"mean": mean, "sd": sd, "ci": ci, "values": [float(x) for x in values]}


def _numeric(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _mean(values, s: dict):
    """A value every seed shares (a channel count, a step count) stays as it is; else the mean."""
    return values[0] if all(v == values[0] for v in values) else s["mean"]


def across_seeds(entries: Sequence[Mapping], seeds: Sequence[int]) -> dict:
    """The per-seed entries of one model ({'train_set', 'scores': {k: x}, 'layers': {layer: {k: x}}}) -> one
    entry of the same shape holding the means, plus 'scores_ci' / 'scores_sd' and 'layers_sd', and 'seeds'."""
    if not entries or len(entries) != len(seeds):
        raise ValueError(f"need one entry per seed; got {len(entries)} entries for seeds {list(seeds)}")
    scores, ci, sd = {}, {}, {}
    keys = list(dict.fromkeys(k for e in entries for k in e["scores"]))  # a score of some seeds only (t-SNE: the
    for k in keys:  # first) is summarised over the seeds that have it
        values = [e["scores"][k] for e in entries if _numeric(e["scores"].get(k))]
        if values:
            s = summary(values)
            scores[k], ci[k], sd[k] = _mean(values, s), s["ci"], s["sd"]
    layers, layers_sd = {}, {}
    for layer, row in entries[0]["layers"].items():
        keys = [k for k in row if all(_numeric(e["layers"][layer].get(k)) for e in entries)]
        values = {k: [e["layers"][layer][k] for e in entries] for k in keys}
        sums = {k: summary(v) for k, v in values.items()}
        layers[layer] = {k: _mean(values[k], s) for k, s in sums.items()}
        layers_sd[layer] = {k: s["sd"] for k, s in sums.items()}
    return {
        "train_set": entries[0]["train_set"],
        "seeds": [int(s) for s in seeds],
        "scores": scores,
        "scores_ci": ci,
        "scores_sd": sd,
        "layers": layers,
        "layers_sd": layers_sd,
    }
