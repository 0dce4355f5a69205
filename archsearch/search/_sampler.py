"""GuidedSampler: proposes trials around guide genomes, then hands over to TPE.

The paper's "guided pruning": per-stage keep ratios averaged over pruner-found genomes
(`Parameterisation.centres`) are the centre; each guided trial samples around it with
Gaussian noise that narrows as trials accumulate. The chance of a guided trial falls
as 1 - (finished / handover)^2, to zero at `handover` finished trials (slowly at first, so
the early trials explore around the guides); the rest go to the fallback sampler (TPE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class GuidedSampler(BaseSampler):
    """Sample near `centres` (param -> value; for booleans the keep probability)."""

    def __init__(self, centres: Mapping[str, float], *, sigma: float = 0.15,
                 min_sigma: float = 0.03, handover: int = 20,
                 fallback: BaseSampler | None = None, seed: int | None = None) -> None:
        if not 0 < min_sigma <= sigma:
            raise ValueError(f"need 0 < min_sigma <= sigma, but got min_sigma={min_sigma}, "
                             f"sigma={sigma}")
        if handover < 1:
            raise ValueError(f"handover must be >= 1, but got handover={handover}")
        self._centres = dict(centres)
        self._sigma, self._min_sigma, self._handover = sigma, min_sigma, handover
        self._fallback = fallback or optuna.samplers.TPESampler(seed=seed)
        self._seed = 0 if seed is None else seed
        self._plans: dict[int, tuple[bool, float]] = {}

    def _n_finished(self, study: optuna.Study) -> int:
        return len(study.get_trials(deepcopy=False, states=_FINISHED))

    def _rng(self, trial: FrozenTrial, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self._seed, trial.number, salt])

    def plan(self, study: optuna.Study, trial: FrozenTrial) -> tuple[bool, float]:
        """(guided?, noise scale) for a trial, decided once: guided with probability
        1 - (finished/handover)^2; noise `sigma` / sqrt(1 + finished), floored at
        `min_sigma`."""
        if trial.number not in self._plans:
            done = self._n_finished(study)
            share = max(0.0, 1.0 - (done / self._handover) ** 2)
            sigma = max(self._min_sigma, self._sigma / float(np.sqrt(1.0 + done)))
            self._plans[trial.number] = (bool(self._rng(trial).random() < share), sigma)
        return self._plans[trial.number]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self._fallback.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self.plan(study, trial)[0]:
            return {}
        return self._fallback.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        centre = self._centres.get(param_name)
        guided, sigma = self.plan(study, trial)
        if centre is None or not guided:
            return self._fallback.sample_independent(study, trial, param_name,
                                                     param_distribution)
        rng = self._rng(trial, salt=1 + sorted(self._centres).index(param_name))
        if isinstance(param_distribution, FloatDistribution):
            value = centre + rng.normal(0.0, sigma)
            return float(np.clip(value, param_distribution.low, param_distribution.high))
        if isinstance(param_distribution, CategoricalDistribution):
            choices = param_distribution.choices
            if set(choices) == {True, False}:  # keep a block with the guides' frequency
                return bool(rng.random() < centre)
            return choices[int(rng.integers(len(choices)))]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._fallback.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._fallback.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()
