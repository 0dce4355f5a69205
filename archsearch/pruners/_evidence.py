"""Evidence before a genome: did the pruner's scores separate at the cut the budget needs?

Scores that sparsity training separates span decades (survivors near 0.1-1, the zero pile at
1e-5 and below), so the statistic works on log10 scores: with K the kept scores and D the
dropped ones,

    separation = (q10(log K) - q90(log D)) / (q90(log K) - q10(log D))

(q = percentile). It is near 1 when the dropped scores sit in a pile decades below the kept
ones, near 0 when the cut runs through one mass of similar scores, and negative when a group
floor or the budget's rounding keeps channels scored below dropped ones. Both failure modes
of a sparsity run give a small value: too little pull (every scale near its initial value,
the cut follows noise) and a cut inside the zero pile (too much pull for the budget). A run
is `separated` when the statistic is at least SEPARATION_MIN. `natural_cut` finds where the
scores split by themselves (Otsu's threshold on the log scores); `upper_natural_cut` is the
upper threshold of three classes, for runs that leave a third population between the zero
pile and the survivors (channels still on their way down when the learning rate dropped:
measured on vgg16, bench/results/separation.md), which two-class Otsu merges with the
survivors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

# Measured (bench/results/separation.md): runs whose scales stayed together score below 0.1,
# runs with a zero pile and a valley before the survivors score 0.3 and above.
SEPARATION_MIN = 0.2
LOG_FLOOR = 1e-12  # exact zeros (proximal steps) sit here on the log scale
DEAD_FRACTION = 0.01  # a score below 1% of the 99th percentile counts as zero
OTSU_BINS = 512  # three-class Otsu works on a histogram of the log scores
# A zero pile this large is one the cut could have followed; a budget that drops more than
# EDGE_MARGIN beyond it cuts live channels (vgg11-half on CIFAR-10 at the cifar preset: 52%
# of the scales at ~0, 68-80% of the channels dropped at 12.5%FLOPs, separation < 0).
PILE_MIN = 0.2
EDGE_MARGIN = 0.05


def _q(values: torch.Tensor, q: float) -> float:
    return float(torch.quantile(values.double(), q))


def separation(kept: Iterable[float] | torch.Tensor, dropped: Iterable[float] | torch.Tensor
               ) -> dict[str, Any]:
    """The separation statistic of one cut (see the module doc) with what it was made of."""
    k = torch.as_tensor(list(kept) if not isinstance(kept, torch.Tensor) else kept).flatten()
    d = torch.as_tensor(list(dropped) if not isinstance(dropped, torch.Tensor)
                        else dropped).flatten()
    doc: dict[str, Any] = {"kept": int(k.numel()), "dropped": int(d.numel()),
                           "min_separation": SEPARATION_MIN}
    if k.numel() == 0 or d.numel() == 0:  # nothing was decided: nothing to doubt
        return {**doc, "statistic": None, "separated": True}
    k, d = _log(k), _log(d)
    k_lo, k_hi, d_lo, d_hi = _q(k, 0.1), _q(k, 0.9), _q(d, 0.1), _q(d, 0.9)
    spread = k_hi - d_lo
    stat = (k_lo - d_hi) / spread if spread > 0 else 0.0
    stat = max(-1.0, min(1.0, stat))
    return {**doc, "statistic": round(stat, 4), "separated": stat >= SEPARATION_MIN,
            "kept_q10": 10 ** k_lo, "kept_q90": 10 ** k_hi, "dropped_q10": 10 ** d_lo,
            "dropped_q90": 10 ** d_hi}


def _log(values: torch.Tensor) -> torch.Tensor:
    return torch.log10(values.double().abs().clamp_min(LOG_FLOOR))


def natural_cut(scores: Mapping[str, torch.Tensor]) -> float:
    """The threshold where the scores split by themselves: Otsu's (the largest between-class
    variance) on the log10 scores; scores at or below it form the lower class."""
    if not scores:
        return 0.0
    values = _log(torch.cat([s.detach().float().cpu().flatten() for s in scores.values()]))
    ordered = values.sort().values
    n = ordered.numel()
    if n < 2:
        return 0.0
    counts = torch.arange(1, n, dtype=torch.float64)
    low_sum = ordered.cumsum(0)[:-1]
    mean_low = low_sum / counts
    mean_high = (ordered.sum() - low_sum) / (n - counts)
    between = counts * (n - counts) * (mean_low - mean_high) ** 2
    i = int(between.argmax())
    return float(10 ** ordered[i])


def upper_natural_cut(scores: Mapping[str, torch.Tensor]) -> float:
    """The upper threshold of three-class Otsu on the log10 scores (dead, dying, alive):
    the two cuts that maximise the between-class variance, over a histogram of OTSU_BINS
    bins; scores at or below the returned threshold are the two lower classes."""
    if not scores:
        return 0.0
    values = _log(torch.cat([s.detach().float().cpu().flatten() for s in scores.values()]))
    lo, hi = float(values.min()), float(values.max())
    if values.numel() < 3 or hi <= lo:
        return float(10 ** hi)
    edges = torch.linspace(lo, hi, OTSU_BINS + 1, dtype=torch.float64)
    index = torch.bucketize(values, edges[1:-1])  # bin k holds edges[k] < v <= edges[k+1]
    count = torch.bincount(index, minlength=OTSU_BINS).double().cumsum(0)
    total = torch.bincount(index, weights=values, minlength=OTSU_BINS).cumsum(0)
    bins = torch.arange(OTSU_BINS)
    i, j = bins.view(-1, 1), bins.view(1, -1)  # the lower classes end at bins i and j
    n1, n2, n3 = count[i], count[j] - count[i], count[-1] - count[j]
    s1, s2, s3 = total[i], total[j] - total[i], total[-1] - total[j]
    # the between-class variance up to constants: Σ s_k² / n_k
    between = s1 ** 2 / n1 + s2 ** 2 / n2 + s3 ** 2 / n3
    between[(n1 == 0) | (n2 == 0) | (n3 == 0) | (j <= i)] = -torch.inf
    upper = int(between.argmax()) % OTSU_BINS
    return float(10 ** edges[upper + 1])


def channel_separation(scores: Mapping[str, torch.Tensor],
                       keep: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The statistic over every scored channel, split by the channels the genome keeps."""
    kept, dropped = [], []
    for name, score in scores.items():
        score = score.detach().float().cpu().flatten()
        mask = torch.zeros(score.numel(), dtype=torch.bool)
        mask[keep[name]] = True
        kept.append(score[mask])
        dropped.append(score[~mask])
    if not kept:
        return separation([], [])
    return separation(torch.cat(kept), torch.cat(dropped))


def dead_level(scores: Mapping[str, torch.Tensor]) -> float:
    """Scores at or below this are zeros (DEAD_FRACTION of the 99th percentile)."""
    if not scores:
        return 0.0
    values = torch.cat([s.detach().float().cpu().flatten() for s in scores.values()])
    return DEAD_FRACTION * _q(values, 0.99)


def warning_line(evidence: Mapping[str, Any], method: str) -> str:
    """One line saying the scores did not separate, why, and what to change: the share of
    channels the budget drops against the share the sparsity term drove to ~0 tells a cut
    inside the zero pile (too much pull for the budget) from one through the live channels
    below the pile's edge (too little) and from scores that never split (no pile)."""
    stat = evidence.get("statistic")
    near_zero = evidence.get("near_zero_share")
    scored = evidence.get("kept", 0) + evidence.get("dropped", 0)
    cut = evidence.get("dropped", 0) / scored if scored else None
    if near_zero is not None and cut is not None and near_zero >= PILE_MIN \
            and cut > near_zero + EDGE_MARGIN:
        what = (f"the budget drops {cut:.0%} of the channels but only {near_zero:.0%} were "
                "driven to ~0, so the cut ran through live ones: raise --sparsity (a pile as "
                "deep as the budget's cut) or ask for a larger budget")
    elif near_zero is not None and near_zero > 0.5:
        dropped = f" (it drops {cut:.0%} of the channels)" if cut is not None else ""
        what = (f"{near_zero:.0%} of the scores were driven to ~0 and the cut{dropped} fell "
                "inside that pile: lower --sparsity")
    else:
        what = ("the scores stayed together and the cut followed noise: train longer "
                "(--epochs, --subset) or raise --sparsity")
    return (f"warning: {method}'s scores did not separate at this budget (separation "
            f"{stat:.2f} < {SEPARATION_MIN}); {what}")
