"""Genome kinds (`archsearch.kinds`): both kinds load, validate, price, fit and render a genome
through one interface; a document's kind is its `format`; "widths" is read as "width"; an
unknown kind or format is one ArchsearchError; the search side asks its kind."""

from __future__ import annotations

import json

import pytest

from archsearch.budget import TOLERANCE, parse_budget
from archsearch.build import bind
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.kinds import (
    GENOME_KINDS,
    KINDS,
    SPARSITY,
    WIDTH,
    genome_from_dict,
    get_kind,
    kind_of,
    kind_of_genome,
    load_genome,
    load_guide,
)
from archsearch.pipeline import is_sparse
from archsearch.pruners import METHOD_CLASSES, Method, Pruner, get_pruner, method_class
from archsearch.search import SEARCH_KINDS, ProxyEvaluator, SparseProxyEvaluator, search_kind
from archsearch.sparsity import SparsityGenome, conv_layers, sparse_cost


@pytest.fixture(scope="module")
def bound():
    return bind("resnet20", "synthetic")


def test_the_kinds_and_their_one_spelling():
    assert GENOME_KINDS == ("width", "sparsity")
    assert KINDS == {"width": WIDTH, "sparsity": SPARSITY}
    assert get_kind("width") is WIDTH and get_kind("sparsity") is SPARSITY
    assert get_kind("widths") is WIDTH  # the spelling pruners used before
    assert get_kind(SPARSITY) is SPARSITY
    with pytest.raises(ArchsearchError, match="unknown genome kind 'dense'"):
        get_kind("dense")


@pytest.mark.parametrize("kind", [WIDTH, SPARSITY], ids=lambda k: k.name)
def test_each_kind_fits_prices_validates_saves_and_loads_a_genome(kind, bound, tmp_path):
    budget = parse_budget("40%params")
    genome = kind.fit(bound, budget)
    assert isinstance(genome, kind.genome_class)
    cost = kind.cost(bound, genome)
    target = budget.target(bound)
    assert abs(cost["params"] - target) <= TOLERANCE * target
    assert cost["params"] < bound.base_cost.params and 0 < cost["params_ratio"] < 1
    assert cost == {k: genome.cost[k] for k in cost}  # the genome records what it costs
    kind.validate(bound, genome)
    path = genome.save(tmp_path / "g.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == kind.format
    assert kind_of(doc) is kind
    loaded = load_genome(path)
    assert kind_of_genome(loaded) is kind and loaded == kind.load(path)
    assert genome_from_dict(doc).to_dict() == doc
    rows = kind.rows(bound, genome)
    assert rows and all(isinstance(r, dict) for r in rows)
    assert kind.key(doc) == kind.key(json.loads(json.dumps(doc)))
    assert kind.plot(rows, tmp_path / "g.png", "t").is_file()


def test_the_kinds_price_differently(bound):
    """A width genome's cost counts its narrower layers; a sparsity genome's its non-zero
    weights: both meet the same budget with different genomes."""
    budget = parse_budget("50%FLOPs")
    width, sparse = WIDTH.fit(bound, budget), SPARSITY.fit(bound, budget)
    assert isinstance(width, Genome) and isinstance(sparse, SparsityGenome)
    assert width.widths and set(sparse.density) == set(SPARSITY.rows(bound, sparse)[i]["layer"]
                                                       for i in range(len(sparse.density)))
    assert SPARSITY.cost(bound, sparse) == sparse_cost(bound, sparse.density)
    for genome, kind in ((width, WIDTH), (sparse, SPARSITY)):
        assert abs(kind.cost(bound, genome)["macs"] - budget.target(bound)) <= \
            TOLERANCE * budget.target(bound)
    with pytest.raises(ArchsearchError, match="space"):
        WIDTH.validate(bound, Genome("resnet56", {}))
    with pytest.raises(ArchsearchError, match="unknown layer"):
        SPARSITY.validate(bound, SparsityGenome("resnet20", {"nope": 0.5}))


def test_a_document_kind_is_its_format_never_its_keys(bound):
    doc = SPARSITY.fit(bound, parse_budget("30%params")).to_dict()
    assert kind_of(doc) is SPARSITY
    widths_keys = {**doc, "format": "archsearch.genome"}  # keys of one, format of the other
    assert kind_of(widths_keys) is WIDTH
    with pytest.raises(ArchsearchError, match="unknown genome field"):
        genome_from_dict(widths_keys)  # read as a width genome: its keys are refused
    for bad, why in (({"density": {}}, "not an archsearch genome"),
                     ({"format": "x"}, "not an archsearch genome"), ([], "a JSON object")):
        with pytest.raises(ArchsearchError, match="not an archsearch genome"):
            kind_of(bad)
        with pytest.raises(ArchsearchError, match=why):  # as a width genome refuses it
            genome_from_dict(bad)


def test_one_load_guide_for_both_kinds(bound, tmp_path):
    budget = parse_budget("40%params")
    width = WIDTH.fit(bound, budget)
    width.cost = {}  # a guide's cost is counted again on its own space
    sparse = SPARSITY.fit(bound, budget)
    wpath, spath = width.save(tmp_path / "w.json"), sparse.save(tmp_path / "s.json")
    guide = load_guide(wpath)
    assert isinstance(guide, Genome) and guide.cost["params"] == WIDTH.cost(bound, width)["params"]
    sguide = load_guide(spath, "sparsity")
    assert isinstance(sguide, SparsityGenome) and sguide.density == sparse.density
    assert load_guide(sparse, SPARSITY).cost == sparse.cost
    with pytest.raises(ArchsearchError, match="not an archsearch genome"):
        load_guide(spath)  # a sparsity genome is no width guide
    with pytest.raises(ArchsearchError, match="not an archsearch sparsity genome"):
        load_guide(wpath, "sparsity")


def test_methods_share_one_base_and_name_their_kind(bound):
    assert all(issubclass(cls, Method) for cls in METHOD_CLASSES.values())
    for name, cls in METHOD_CLASSES.items():
        assert method_class(name) is cls
        assert get_kind(cls.genome_kind).name == cls.genome_kind  # one spelling
        assert (cls.genome_kind == "width") == issubclass(cls, Pruner)
    assert method_class("magnitude").genome_kind == "sparsity"
    assert is_sparse(get_pruner("magnitude", bound))
    assert not is_sparse(get_pruner("uniform", bound))
    with pytest.raises(ArchsearchError, match="unknown pruning method"):
        method_class("nope")


def test_a_search_asks_its_kind(bound):
    assert set(SEARCH_KINDS) == set(KINDS)
    width, sparse = search_kind("width"), search_kind("sparsity")
    assert width.genome is WIDTH and sparse.genome is SPARSITY
    assert search_kind("widths") is width
    assert width.proxy is ProxyEvaluator and sparse.proxy is SparseProxyEvaluator

    class Config:
        granularity = "stage"

    budget = parse_budget("30%params")
    param = sparse.parameterisation(bound, budget, Config())
    assert param.layers == tuple(conv_layers(bound))
    uniform = param.uniform()
    assert len(set(round(d, 9) for d in uniform.density.values())) == 1
    queued = param.enqueued([], uniform, 3)
    assert [attrs["baseline"] for _, attrs in queued] == ["uniform"]
    wparam = width.parameterisation(bound, budget, Config())
    assert wparam.granularity == "stage"
    assert wparam.uniform().cost == bound.uniform(budget).cost
    with pytest.raises(ArchsearchError, match="unknown genome kind"):
        search_kind("dense")
