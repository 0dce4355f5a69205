"""Cost metrics as registry entries, and latency budgets priced from a per-layer table (issue
24): a toy metric reaches the budget parser, the cost record and the search objective; a
latency table built with a fake clock is deterministic and refused when it is not this
machine's; fit_to_budget lands on a latency budget; the CLI refuses bad latency input in
one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archsearch.budget import TOLERANCE, BudgetError, fit_to_budget, flat_note, parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.errors import ArchsearchError
from archsearch.latency import (
    LatencyModel,
    LatencySettings,
    LatencyTableError,
    build_table,
    latency_pricer,
    read_table,
    table_path,
)
from archsearch.metrics import Metric, get_metric, register_metric, unregister_metric
from tests.test_hostile_cli import refused


class FakeClock:
    """Every reading one millisecond after the one before: each timed call takes 1 ms."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1e-3
        return self.t


def tiny() -> BoundSpace:
    """resnet20 at 8×8 pixels, a space of its own (not the shared bind cache)."""
    bound = bind("resnet20", "synthetic", input_size=8)
    return BoundSpace(bound.space, bound.info)


def fake_settings(tmp_path, **kw) -> LatencySettings:
    return LatencySettings(grid=3, clock=FakeClock(), cache=str(tmp_path), **kw)


_BUILT: dict[int, dict] = {}


def fake_table(grid: int = 3) -> dict:
    """The fake-clock table of `tiny()` at `grid` (built once per test process)."""
    if grid not in _BUILT:
        _BUILT[grid] = build_table(tiny(), LatencySettings(grid=grid, clock=FakeClock()))
    return json.loads(json.dumps(_BUILT[grid]))


def bilinear_table(grid: int = 3) -> dict:
    """The fake-clock table with every entry replaced by ms = (1 + cin) * (1 + cout) / 1e3:
    width-dependent, bilinear (so interpolation is exact), no residual."""
    doc = fake_table(grid)
    for e in doc["entries"]:
        e["ms"] = [[(1 + a) * (1 + b) / 1e3 for b in e["grid_out"]] for a in e["grid_in"]]
    doc["residual"] = [0.0, 0.0, 0.0]
    return doc


def offset_table(grid: int = 3) -> dict:
    """The bilinear table with each entry's full-width time added to all of its widths: half
    of the base's latency no width removes, so latency is flat in MACs near 50%."""
    doc = bilinear_table(grid)
    for e in doc["entries"]:
        full = e["ms"][-1][-1]
        e["ms"] = [[full + ms for ms in row] for row in e["ms"]]
    return doc


# -- the registry ------------------------------------------------------------------------

class ConvChannels:
    """A toy metric: output channels summed over the active convs."""

    def __init__(self, bound: BoundSpace, settings: object) -> None:
        self.a_out = bound.costs.a_out
        self.conv = np.array([c.kind == "conv" for c in bound.graph.calls], dtype=float)

    def vector(self, w: np.ndarray, active: np.ndarray) -> float:
        return float(active @ (self.conv * (self.a_out @ w)))

    def record(self, value: float, base: float) -> dict:
        return {"convch": value, "convch_ratio": value / base}


@pytest.fixture
def toy_metric():
    metric = register_metric(Metric("convch", "conv channels", ("convch",), "40%convch",
                                    ConvChannels, scales={"k": 1e3}))
    yield metric
    unregister_metric("convch")


def test_a_toy_metric_reaches_the_parser_the_cost_record_and_fit_to_budget(toy_metric):
    assert "40%convch" in str(pytest.raises(ArchsearchError, parse_budget, "5xyz").value)
    relative, absolute = parse_budget("40%convch"), parse_budget("0.3kconvch")
    assert (relative.metric, relative.value, relative.relative) == ("convch", 0.4, True)
    assert (absolute.metric, absolute.value, absolute.relative) == ("convch", 300.0, False)
    bound = tiny()
    base = bound.base_in("convch")
    assert base == sum(c.outputs[0].size for c in bound.graph.calls if c.kind == "conv")
    widths = fit_to_budget({}, relative, bound)
    genome = bound.genome(widths)
    assert genome.cost["convch"] == pytest.approx(0.4 * base, rel=TOLERANCE)
    assert genome.cost["convch_ratio"] == pytest.approx(genome.cost["convch"] / base)
    assert {"macs", "params", "macs_ratio", "params_ratio"} <= set(genome.cost)


def test_a_toy_metric_is_a_search_objective(tmp_path, toy_metric):
    from archsearch.search import Search, SearchConfig, open_run
    from tests.test_search_workers import FakeEvaluator

    config = SearchConfig.from_flat(budget="30%FLOPs", out=str(tmp_path / "run"), space="resnet20",
                                    dataset="fashion-mnist", trials=3, evaluator="proxy", final=0,
                                    proxy_epochs=1, objectives=("accuracy", "convch"))
    Search(config, FakeEvaluator(epochs=1), worker_index=0).work()
    trials = [t for t in open_run(tmp_path / "run").trials() if t.values]
    assert len(trials) == 3
    for t in trials:
        assert t.values[1] == t.user_attrs["genome"]["cost"]["convch"] > 0


def test_an_unknown_objective_names_the_metrics():
    from archsearch.search import SearchConfig

    with pytest.raises(ArchsearchError, match="macs, params, latency"):
        SearchConfig(budget="30%FLOPs", out="x", objectives=("accuracy", "speed"))


@pytest.mark.parametrize(("text", "metric", "value", "relative"), [
    ("3ms", "latency", 3.0, False), ("500us", "latency", 0.5, False),
    ("0.002s", "latency", 2.0, False), ("40%latency", "latency", 0.4, True),
    ("50%FLOPs", "macs", 0.5, True), ("1.5Mparams", "params", 1.5e6, False),
])
def test_latency_budgets_parse(text, metric, value, relative):
    budget = parse_budget(text)
    assert (budget.metric, budget.relative) == (metric, relative)
    assert budget.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["0ms", "-3ms", "5xyz", "3latency", "50%ms", "0%latency"])
def test_bad_latency_budgets_are_refused(text):
    with pytest.raises(ArchsearchError):
        parse_budget(text)


# -- the table ---------------------------------------------------------------------------

def test_a_fake_clock_table_is_deterministic_and_records_where(tmp_path):
    bound = tiny()
    one, two = fake_table(), build_table(bound, fake_settings(tmp_path))
    assert {k: v for k, v in one.items() if k != "build_s"} == {
        k: v for k, v in two.items() if k != "build_s"}
    assert all(v == 1.0 for e in one["entries"] for row in e["ms"] for v in row)
    for key in ("device", "device_name", "threads", "batch", "torch", "space", "input_shape",
                "build_s"):
        assert key in one
    assert (one["threads"], one["batch"], one["input_shape"]) == (1, 1, [3, 8, 8])
    # every layer timed 1 ms, so a network's layers sum to its timed calls; every whole
    # network timed 1 ms too, less than its layers: the fitted residual is negative, and a
    # genome is priced at no less than its layers
    timed = sum(c >= 0 for c in one["calls"])
    full = next(r for r in one["calibration"] if r["genome"] == "uniform x1")
    assert full["layers_ms"] == full["predicted_ms"] == pytest.approx(timed)
    assert all(r["measured_ms"] == pytest.approx(1.0) for r in one["calibration"])
    assert all(r["predicted_ms"] == r["layers_ms"] for r in one["calibration"])


def test_interpolation_is_exact_on_a_bilinear_table(tmp_path):
    bound = tiny()
    model = LatencyModel(bound, bilinear_table())
    rng = np.random.default_rng(0)
    costs = bound.costs
    for _ in range(5):
        w = costs.widths_vector({g: int(rng.integers(2, bound.graph.groups[g].size + 1))
                                 for g in bound.graph.prunable})
        cin, cout = costs.a_in @ w, costs.a_out @ w
        one_width = ("bn", "avgpool", "adaptive_avgpool")  # timed over the output width
        want = [(1 + (0 if c.kind in one_width else cin[i])) * (1 + cout[i]) / 1e3
                for i, c in enumerate(bound.graph.calls)]
        np.testing.assert_allclose(model.layers(w), want, rtol=1e-9)


def test_the_residual_fits_the_gap_relative_to_each_network(tmp_path):
    """The residual is least squares of (measured - layers) / measured over the calibration
    networks, so a narrow network's gap counts as much as the base's: on gaps the residual
    cannot fit exactly, its relative error is no worse than the absolute fit's."""
    from archsearch.latency import calibration_genomes
    from archsearch.latency._fit import fit_residual

    bound = tiny()
    model, costs = LatencyModel(bound, bilinear_table()), bound.costs

    def layers_and_features(genome):
        w, active = costs.widths_vector(genome.widths), costs.active(genome.blocks)
        return float(active @ model.layers(w)), model.features(w, active)

    def measure(_bound, genome, _settings, _repeats):  # an overhead the features miss
        layers, f = layers_and_features(genome)
        return layers + 0.05 + 0.02 * np.sqrt(f[1] * 1e3)

    coef, rows = fit_residual(bound, model, fake_settings(tmp_path), measure, 1)
    genomes = calibration_genomes(bound)
    parts = [layers_and_features(g) for _, g in genomes]
    meas = np.array([measure(bound, g, None, 1) for _, g in genomes])
    feats = np.array([f for _, f in parts])
    gaps = meas - np.array([lay for lay, _ in parts])
    weighted = np.linalg.lstsq(feats / meas[:, None], gaps / meas, rcond=None)[0]
    absolute = np.linalg.lstsq(feats, gaps, rcond=None)[0]
    np.testing.assert_allclose(coef, weighted, rtol=1e-6, atol=1e-9)

    def relative(c):
        return float(np.sum(((feats @ c - gaps) / meas) ** 2))
    assert relative(np.asarray(coef)) < relative(absolute)
    assert [r["measured_ms"] for r in rows] == pytest.approx(list(meas), abs=1e-5)


def _install(bound, settings, table):
    """Put `table` where the latency pricer of `bound` at `settings` looks for it."""
    path = table_path(bound, settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(table))
    return path


def test_fit_to_budget_lands_on_a_latency_budget(tmp_path):
    bound = tiny()
    settings = fake_settings(tmp_path)
    _install(bound, settings, bilinear_table())
    budget = parse_budget("45%latency", settings)
    base = bound.base_in("latency", settings)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        shape = {g: float(rng.uniform(0.3, 1.0)) for g in bound.graph.prunable}
        widths = fit_to_budget(shape, budget, bound)
        got = bound.cost_at(widths, None, "latency", settings)
        assert got == pytest.approx(0.45 * base, rel=TOLERANCE)
        cost = bound.genome(widths).cost
        assert cost["latency_ms"] == pytest.approx(got, rel=1e-4)
        assert (cost["latency_threads"], cost["latency_batch"]) == (1, 1)
        assert cost["latency_device"].startswith("cpu: ")
    with pytest.raises(BudgetError, match="narrowest genome costs .* ms"):
        fit_to_budget({}, parse_budget("0.001ms", settings), bound)


def test_a_budget_where_the_table_is_flat_is_flagged(tmp_path):
    """Half the latency is fixed: at 55% of it uniform's MACs swing ~3x for ±5% of the
    budget (flagged); at 90% they do not, nor anywhere on a table proportional to MACs, nor
    on an analytic metric."""
    bound = tiny()
    settings = fake_settings(tmp_path)
    path = _install(bound, settings, offset_table())
    note = flat_note(bound, parse_budget("55%latency", settings))
    assert note and note.startswith("note: 55%latency sits where the latency table on ")
    assert "1 thread(s), batch 1 is flat" in note
    lo, hi = (float(x.rstrip("%")) for x in note.split("of it ")[1].split(";")[0].split(".."))
    assert hi > 1.5 * lo
    assert flat_note(bound, parse_budget("90%latency", settings)) is None
    assert flat_note(bound, parse_budget("12.5%FLOPs"), step=0.5) is None
    path.write_text(json.dumps(bilinear_table()))
    bound.pricers.clear()
    assert flat_note(bound, parse_budget("55%latency", settings)) is None


def test_a_table_from_elsewhere_is_refused_a_stale_one_rebuilt(tmp_path):
    bound = tiny()
    settings = fake_settings(tmp_path)
    path = _install(bound, settings, fake_table())
    good = json.loads(path.read_text())
    for key, value in (("threads", 4), ("device_name", "Other CPU 9000"), ("batch", 8)):
        path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(LatencyTableError, match=f"measured with {key}"):
            read_table(path, bound, settings)
    path.write_text(json.dumps(good)[:-40])
    with pytest.raises(LatencyTableError, match="damaged"):
        read_table(path, bound, settings)
    path.write_text(json.dumps({**good, "calls": good["calls"][:-1]}))
    with pytest.raises(LatencyTableError, match="damaged"):
        read_table(path, bound, settings)
    path.write_text(json.dumps({**good, "torch": "0.1"}))
    assert read_table(path, bound, settings) is None
    latency_pricer(bound, settings)  # stale: measured again and rewritten
    assert json.loads(path.read_text())["torch"] == good["torch"]


def test_latency_settings_are_checked():
    for bad in ({"threads": 0}, {"batch": -1}, {"device": "tpu"}):
        with pytest.raises(ArchsearchError):
            LatencySettings(**bad)


def test_unstructured_sparsity_refuses_a_latency_budget():
    from archsearch.pruners import get_pruner

    with pytest.raises(BudgetError, match="unstructured pruning"):
        get_pruner("magnitude", tiny()).set_budget(parse_budget("40%latency"))


def test_one_real_measurement(tmp_path):
    """The real clock: every timed point is a positive, finite time, and where it was
    measured is recorded (no assertion on how fast: the machine is shared)."""
    bound = tiny()
    settings = LatencySettings(grid=2, cache=str(tmp_path))
    pricer = latency_pricer(bound, settings)
    values = [v for e in pricer.table["entries"] for row in e["ms"] for v in row]
    assert values and all(np.isfinite(v) and v > 0 for v in values)
    assert pricer.build_s > 0 and table_path(bound, settings).is_file()
    assert bound.base_in("latency", settings) > 0
    assert get_metric("latency").cost_key == "latency_ms"


# -- the CLI -----------------------------------------------------------------------------

@pytest.fixture
def cached_table(tmp_path, monkeypatch):
    """A fake-clock table where `show resnet20 --dataset synthetic --input-size 8` reads it
    (default latency flags: cpu, 1 thread, batch 1)."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    bound = bind("resnet20", "synthetic", input_size=8)
    path = table_path(bound, LatencySettings())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(bilinear_table(grid=6)))
    bound.pricers.clear()  # a table read by an earlier test of this process is in memory
    yield path
    bound.pricers.clear()


SHOW = ("show", "resnet20", "--dataset", "synthetic", "--input-size", "8")


def test_show_at_a_latency_budget(capsys, cached_table):
    from archsearch.cli.main import main

    assert main([*SHOW, "--budget", "40%latency", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latency_ratio"] == pytest.approx(0.4, rel=TOLERANCE)
    assert doc["genome"]["cost"]["latency_ms"] == doc["latency_ms"]


def test_show_flags_a_flat_latency_budget(capsys, cached_table):
    from archsearch.cli.main import main

    assert main([*SHOW, "--budget", "40%latency", "--json"]) == 0
    assert "flat" not in capsys.readouterr().err
    cached_table.write_text(json.dumps(offset_table(grid=6)))
    bind("resnet20", "synthetic", input_size=8).pricers.clear()
    assert main([*SHOW, "--budget", "55%latency", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["latency_ratio"] == pytest.approx(0.55, rel=TOLERANCE)
    assert err.count("\n") == 1 and "sits where the latency table" in err


@pytest.mark.parametrize("budget, match", [
    ("0ms", "must be positive"), ("-3ms", "must be positive"),
    ("5xyz", "cannot read budget '5xyz'"), ("0.001ms", "cannot be met"),
])
def test_bad_latency_budgets_through_the_cli(capsys, cached_table, budget, match):
    assert match in refused(capsys, *SHOW, f"--budget={budget}")


@pytest.mark.parametrize("key, value", [("threads", 2), ("device_name", "Other CPU 9000")])
def test_a_table_from_another_machine_through_the_cli(capsys, cached_table, key, value):
    doc = json.loads(cached_table.read_text())
    cached_table.write_text(json.dumps({**doc, key: value}))
    assert "was measured with" in refused(capsys, *SHOW, "--budget", "3ms")


def test_a_damaged_table_through_the_cli(capsys, cached_table):
    cached_table.write_text(cached_table.read_text()[:100])
    assert "is damaged" in refused(capsys, *SHOW, "--budget", "3ms")


@pytest.mark.parametrize("argv", [
    ["search", "--budget", "0ms", "--out", "x"],
    ["search", "--budget", "5%FLOPs", "--objectives", "accuracy,speed", "--out", "x"],
    ["discover", "--method", "slimming", "--budget", "-3ms"],
    ["rethink", "--method", "slimming", "--budget", "5xyz"],
    [*SHOW, "--budget", "3ms", "--threads", "0"],
    [*SHOW, "--budget", "3ms", "--latency-batch", "0"],
])
def test_bad_latency_flags_through_the_cli(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    refused(capsys, *argv)
    assert not (tmp_path / "x").exists()


def test_a_search_on_accuracy_and_latency(tmp_path, cached_table):
    """`search --objectives accuracy,latency`: each trial's second objective is its genome's
    latency priced from the table (the budget here is in MACs)."""
    from archsearch.search import Search, SearchConfig, open_run
    from tests.test_search_workers import FakeEvaluator

    config = SearchConfig.from_flat(budget="40%FLOPs", out=str(tmp_path / "run"), space="resnet20",
                                    dataset="synthetic", input_size=8, trials=3, evaluator="proxy",
                                    final=0, proxy_epochs=1, objectives=("accuracy", "latency"))
    assert {"latency_device", "threads", "latency_batch"} <= set(config.identity())
    Search(config, FakeEvaluator(epochs=1), worker_index=0).work()
    trials = [t for t in open_run(tmp_path / "run").trials() if t.values]
    assert len(trials) == 3
    for t in trials:
        cost = t.user_attrs["genome"]["cost"]
        assert t.values[1] == cost["latency_ms"] > 0 and cost["latency_threads"] == 1
