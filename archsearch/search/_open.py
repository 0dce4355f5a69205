"""`open_search`: one worker's `Search` for a config (of either genome kind: the search asks
its kind, `archsearch.search._kinds`, what differs)."""

from __future__ import annotations

from collections.abc import Mapping

from archsearch.search._search import Evaluator, Search, SearchConfig


def open_search(config: SearchConfig, evaluator: Evaluator | Mapping[str, Evaluator] | None,
                worker_index: int | None = None) -> Search:
    """One worker's Search for the config (width or sparsity genomes)."""
    return Search(config, evaluator, worker_index)
