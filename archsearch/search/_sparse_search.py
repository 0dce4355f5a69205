"""The search over sparsity genomes: `SparseSearch`, a `Search` whose trials are sparsity
genomes (`archsearch.search._sparsity` says how), and `open_search`, which picks the search
class of a config's genome kind."""

from __future__ import annotations

from collections.abc import Mapping

import optuna
from optuna.trial import Trial

from archsearch.search._search import Evaluator, Search, SearchConfig
from archsearch.search._sparsity import SparseParameterisation
from archsearch.sparsity import SparsityGenome, conv_layers, guide_shape


class SparseSearch(Search):
    """A search over sparsity genomes (how: `archsearch.search._sparsity`)."""

    def _parameterisation(self) -> SparseParameterisation:  # type: ignore[override]
        return SparseParameterisation(self.bound, self.budget, tuple(conv_layers(self.bound)))

    def _enqueue_guides(self, study: optuna.Study) -> None:
        """The guides' averaged pattern first (the paper's guided sparsification), then the
        uniform density (the baseline), as far as the first stage's trials allow."""
        first = self.stages[0][1]
        queue = []
        if self.guides:
            shape = guide_shape(self.guides, self.param.layers)
            queue.append((shape, {"guide": ",".join(self.config.guides)}))
        if not queue or first > 1:
            queue.append((self.uniform.density, {"baseline": "uniform"}))
        for shape, label in queue[:first]:
            study.enqueue_trial(self.param.guide_params(shape),
                                user_attrs={**label, "guide_shape": dict(shape)})

    def genome_for(self, trial: Trial) -> SparsityGenome:  # type: ignore[override]
        """The trial's sparsity genome: sampled shape (or an enqueued one) on the budget."""
        genome = self.param.suggest(trial)
        shape = trial.user_attrs.get("guide_shape")
        if shape is not None:
            label = {k: trial.user_attrs[k] for k in ("guide", "baseline")
                     if k in trial.user_attrs}
            genome = self.param.project(shape, None, label)
        genome.provenance.update({"trial": trial.number, "study": self.config.study_name,
                                  "source_run": str(self.run_dir)})
        return genome



def open_search(config: SearchConfig, evaluator: Evaluator | Mapping[str, Evaluator] | None,
                worker_index: int | None = None) -> Search:
    """One worker's Search for the config's genome kind (width or sparsity)."""
    kind = SparseSearch if config.genome_kind == "sparsity" else Search
    return kind(config, evaluator, worker_index)
