"""The search benches' bookkeeping: which recorded rows may be reused, the one-std verdict,
and the candidates-per-hour arithmetic (no training here: the benches run elsewhere)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import search_quality as sq  # noqa: E402
import search_throughput as stp  # noqa: E402


def _doc(epochs=sq.EPOCHS, subset=None, seeds=3, methods=("uniform", "slimming", "sss")):
    rows = [{"budget": "25%FLOPs", "method": m, "per_seed": [0.9, 0.91, 0.92][:seeds],
             "wall_s": [1.0, 2.0, 3.0][:seeds], "widths": [4, 8], "macs_ratio": 0.25,
             "params_ratio": 0.3} for m in methods]
    return {"args": {"epochs": epochs, "subset": subset, "seeds": seeds},
            "spaces": [{"space": "resnet20", "rows": rows}]}


def test_recorded_rows_are_reused_only_on_exactly_this_schedule():
    args = sq.parse_args([])
    rows = sq.recorded_rows(_doc(), "resnet20", "25%FLOPs", args)
    assert set(rows) == {"uniform", "slimming"}
    assert rows["uniform"]["per_seed"] == [0.9, 0.91, 0.92]
    assert rows["slimming"]["source"] == "genome_quality.json"
    args.seeds = 2  # fewer seeds than recorded: the first ones (seeds 0, 1)
    assert sq.recorded_rows(_doc(), "resnet20", "25%FLOPs", args)["uniform"]["per_seed"] == \
        [0.9, 0.91]
    args.seeds = 3
    for other in (_doc(epochs=sq.EPOCHS + 1), _doc(subset=5000), _doc(seeds=2), None):
        assert sq.recorded_rows(other, "resnet20", "25%FLOPs", args) is None
    # the rows it has on this schedule: the other one is trained by the bench
    assert set(sq.recorded_rows(_doc(methods=("uniform",)), "resnet20", "25%FLOPs",
                                args)) == {"uniform"}
    assert sq.recorded_rows(_doc(), "resnet20", "12.5%FLOPs", args) == {}
    assert sq.recorded_rows(_doc(), "vgg11-half", "25%FLOPs", args) == {}


def test_smoke_sizes_never_write_into_the_results():
    args = sq.parse_args(["--smoke"])
    assert args.epochs == sq.SMOKE["epochs"] and args.search == sq.SMOKE_SEARCH
    assert "results" not in Path(args.out).parts and args.runs.endswith("-smoke")
    # the smoke schedule is not genome_quality's: its recorded rows are not reused
    assert sq.recorded_rows(_doc(), "resnet20", "25%FLOPs", args) is None
    throughput = stp.parse_args(["--smoke"])
    assert "results" not in Path(throughput.out).parts
    assert stp.parse_args([]).configs == {"proxy-20": {"evaluator": "proxy", "final": 0},
                                          "multi-fidelity": {}}


def test_a_search_variant_is_its_own_study(tmp_path):
    """`--search-option` sets SearchConfig's flat settings (numbers as numbers), is named in
    the schedule (so its results never merge with the shipped search's), needs its own
    ledger and results, and refuses a key the search lacks or the bench sets itself."""
    own = ["--ledger", str(tmp_path / "{space}.json"), "--out", str(tmp_path / "out")]
    args = sq.parse_args(["--dataset", "cifar10", "--preset", "cifar", *own,
                          "--search-option", "base=/runs/d/sparse.pt",
                          "--search-option", "base_epochs=20",
                          "--search-option", "base_subset=0.5"])
    assert args.search == {"base": "/runs/d/sparse.pt", "base_epochs": 20, "base_subset": 0.5}
    assert sq.schedule(args)["search"] == args.search != sq.schedule(sq.parse_args([]))["search"]
    config = sq.SearchConfig.from_flat(budget="12.5%FLOPs", out=str(tmp_path), **args.search)
    assert config.screen.base_epochs == 20 and config.screen.base == "/runs/d/sparse.pt"
    for bad in (["--search-option", "base=x"],  # the committed ledger and results
                [*own, "--search-option", "budget=3%FLOPs"],
                [*own, "--search-option", "no_such=1"], [*own, "--search-option", "screen"]):
        with pytest.raises(SystemExit):
            sq.parse_args(["--dataset", "cifar10", *bad])
    assert sq.parse_args(["--smoke", "--search-option", "screen=4"]).search["screen"] == 4


def test_a_difference_exceeds_one_std_only_beyond_the_larger_std():
    clear = sq.compare([0.90, 0.92], [0.89, 0.89])  # +0.02, stds 0.014 and 0
    assert clear["delta"] == pytest.approx(0.02) and clear["exceeds_one_std"]
    noisy = sq.compare([0.90, 0.92], [0.85, 0.95])  # +0.01, std 0.07
    assert not noisy["exceeds_one_std"]
    worse = sq.compare([0.80, 0.80], [0.90, 0.90])
    assert worse["delta"] < 0 and worse["exceeds_one_std"]
    assert "worse" in sq._verdict(worse) and "within" in sq._verdict(noisy)


def _costs(**per):
    return {f: {"candidates": n, "complete": n, "pruned": 0, "failed": 0, "wall_s": s}
            for f, (n, s) in per.items()}


def test_candidates_per_hour_with_and_without_the_one_off_training():
    old = {"costs": _costs(proxy=(20, 200.0)), "one_off_s": 0.0}
    new = {"costs": _costs(screen=(200, 300.0), proxy=(20, 200.0), final=(3, 100.0)),
           "one_off": "base", "one_off_s": 200.0}
    t = stp.throughput(old, new)
    assert t["per_hour"]["old"] == pytest.approx(360.0)  # 20 in 200 s
    assert t["per_hour"]["new"] == pytest.approx(3600 * 223 / 600)
    assert t["per_hour"]["new_without_one_off"] == pytest.approx(3600 * 223 / 400)
    assert t["ratio"] == pytest.approx((223 / 600) / (20 / 200))
    assert t["screen_s_per_candidate"] == pytest.approx(0.5)  # (300 - 200) / 200
    assert t["screened_in_old_time"] == pytest.approx(0.0)  # the one-off training takes it all
    assert t["screened_in_old_time_without_one_off"] == pytest.approx(400.0)
    text = stp.markdown({"space": "s", "budget": "b", "throughput": t, "command": "c",
                         "machine": {"cpu": "x", "threads": 1, "precision": "fp32",
                                     "torch": "t"},
                         "runs": {"proxy-20": old | {"command": "o", "wall_s": None},
                                  "multi-fidelity": new | {"command": "n", "wall_s": 610.0}}})
    assert f"**{t['ratio']:.1f}×**" in text and "Target ≥ 10×: no" in text
    assert "adaptive-bn's base, 200 s" in text


def test_cifar10_runs_on_the_preset_with_committed_ledgers_and_named_results():
    import evaluator_fidelity as ef
    import genome_quality as gq

    g = gq.resolve_args(["--dataset", "cifar10"])  # one ledger per space
    assert (g.ledger, g.out, g.runs) == (str(gq.RESULTS / "genome_quality_cifar10_{space}"
                                             ".legs.json"),
                                         str(gq.RESULTS / "genome_quality_cifar10"),
                                         "runs/genome_quality_cifar10")
    args = sq.parse_args(["--dataset", "cifar10", "--preset", "cifar"])
    assert args.data_root == str(gq.SHARED_CIFAR)
    assert args.out == str(gq.RESULTS / "search_quality_cifar10")
    assert args.ledger.format(space="resnet20") == str(
        gq.RESULTS / "search_quality_cifar10_resnet20.legs.json")
    assert args.recorded == str(gq.RESULTS / "genome_quality_cifar10.json")
    sch = sq.schedule(args)  # the preset's recipe, as genome_quality's CIFAR legs
    assert (sch["epochs"], sch["batch_size"], sch["test_flip"]) == (20, 128, True)
    assert sq.schedule(sq.parse_args([])) == {  # Fashion-MNIST: unchanged
        "epochs": sq.EPOCHS, "subset": None, "batch_size": sq.BATCH,
        "val_fraction": sq.VAL_FRACTION, "seeds": 3, "search": {}}
    # genome_quality's CIFAR rows are reused on that schedule only
    cifar = _doc(epochs=gq.EPOCHS)
    cifar["args"].update(dataset="cifar10", preset="cifar")
    assert set(sq.recorded_rows(cifar, "resnet20", "25%FLOPs", args)) == {"uniform",
                                                                           "slimming"}
    assert sq.recorded_rows(_doc(), "resnet20", "25%FLOPs", args) is None
    assert sq.recorded_rows(cifar, "resnet20", "25%FLOPs", sq.parse_args([])) is None
    smoke = sq.parse_args(["--smoke", "--dataset", "cifar10", "--preset", "cifar"])
    assert "results" not in Path(smoke.ledger).parts and "results" not in Path(smoke.out).parts

    f = ef.parse_args(["--dataset", "cifar10", "--preset", "cifar"])
    assert f.ledger == str(gq.RESULTS / "evaluator_fidelity_cifar10.legs.json")
    assert f.out == str(gq.RESULTS / "evaluator_fidelity_cifar10")
    assert f.work == "runs/evaluator_fidelity_cifar10" and f.data_root == str(gq.SHARED_CIFAR)
    s = f.sizes["scratch"]
    assert (s["epochs"], s["batch_size"], s["lr_schedule"], s["test_flip"]) == \
        (20, 128, "onecycle", True)
    assert f.sizes["base"]["epochs"] == 20 and f.sizes["supernet"]["subset"] == 0.25
    plain = ef.parse_args([])  # Fashion-MNIST: unchanged, a file per leg
    assert plain.ledger is None and plain.sizes["scratch"] == ef.SCRATCH
    fsmoke = ef.parse_args(["--smoke", "--dataset", "cifar10", "--preset", "cifar"])
    assert "results" not in Path(fsmoke.ledger).parts and fsmoke.sizes["scratch"]["epochs"] == 1


def test_evaluator_fidelity_legs_resume_and_stop_when_the_minutes_are_spent(tmp_path):
    import evaluator_fidelity as ef
    import genome_quality as gq

    for ledger in (None, str(tmp_path / "legs.json")):
        args = ef.parse_args(["--work", str(tmp_path / "w"), "--budget-minutes", "1000"])
        args.ledger = ledger
        legs = ef.Legs(args)
        assert legs.cached("resnet20/scratch-0-s0", lambda: {"test_acc": 0.5}) == \
            {"test_acc": 0.5}
        again = ef.Legs(args)  # a later invocation reads it back, makes nothing
        assert again.cached("resnet20/scratch-0-s0", lambda: pytest.fail("remade")) == \
            {"test_acc": 0.5}
        args.budget_minutes = 0.0  # spent: a new leg is not started, a recorded one is read
        with pytest.raises(gq.OutOfTime):
            again.cached("resnet20/scratch-1-s0", lambda: pytest.fail("started"))
        assert again.get("resnet20/scratch-0-s0") == {"test_acc": 0.5}
    assert (tmp_path / "w" / "resnet20" / "scratch-0-s0.json").is_file()
    assert list(ef.Ledger(tmp_path, tmp_path / "legs.json").legs) == ["resnet20/scratch-0-s0"]


def test_genome_quality_keeps_one_ledger_per_space_and_the_other_spaces_rows(tmp_path):
    """Two spaces in parallel (one invocation each) write their own ledgers, and the results
    file of one keeps the other's rows; another study's results are not merged in."""
    import genome_quality as gq

    argv = ["--dataset", "cifar10", "--preset", "cifar", "--runs", str(tmp_path / "runs"),
            "--ledger", str(tmp_path / "L_{space}.legs.json"), "--out", str(tmp_path / "out")]
    args = gq.resolve_args(argv)
    _, one = gq.open_bench(args, "resnet20")
    _, two = gq.open_bench(args, "vgg11-half")
    one.put("resnet20/12.5%FLOPs/uniform/s0", {"test_acc": 0.5})
    assert one.path == tmp_path / "L_resnet20.legs.json" and two.legs == {}
    with pytest.raises(ValueError):
        gq.open_bench(args)  # a template without a space
    old = {"args": vars(args), "spaces": [{"space": "vgg11-half", "rows": [],
                                           "generators": {}}],
           "command": "first", "legs_wall_s": 10.0}
    new = {"args": vars(args), "spaces": [{"space": "resnet20", "rows": [], "generators": {}}],
           "command": "second", "legs_wall_s": 5.0}
    assert gq.same_study(old, args)
    merged = gq.merge_results(old, new)
    assert [s["space"] for s in merged["spaces"]] == ["vgg11-half", "resnet20"]
    assert merged["commands"] == ["first", "second"] and merged["legs_wall_s"] == 15.0
    assert not gq.same_study(old, gq.resolve_args(argv + ["--seeds", "2"]))
    # --reuse merges another invocation's legs into each space's own ledger, and only its own
    other = tmp_path / "other"
    other.mkdir()
    (other / "legs.json").write_text('{"vgg11-half/6.25%FLOPs/uniform/s0": {"test_acc": 0.7},'
                                     ' "resnet20/6.25%FLOPs/uniform/s0": {"test_acc": 0.6}}')
    args = gq.resolve_args(argv + ["--reuse", str(other)])
    _, one = gq.open_bench(args, "resnet20")
    _, two = gq.open_bench(args, "vgg11-half")
    assert sorted(one.legs) == ["resnet20/12.5%FLOPs/uniform/s0", "resnet20/6.25%FLOPs/uniform/s0"]
    assert list(two.legs) == ["vgg11-half/6.25%FLOPs/uniform/s0"]


def test_genome_quality_method_specs_cut_again_from_the_plain_methods_training(tmp_path):
    """`slimming:cut=cost` is slimming with a cut option: the same run folder (one sparsity
    training), its options read by the pruner's own parsers; a training option is refused,
    but for `sparsity=λ`, which gets its own run folder (its own sparsity training)."""
    import genome_quality as gq

    assert gq.method_spec("slimming") == ("slimming", {})
    assert gq.method_spec("slimming:cut=cost:min_keep=0.05") == (
        "slimming", {"cut": "cost", "min_keep": 0.05})
    assert gq.method_spec("taylor:cut=global") == ("taylor", {"cut": "global"})
    root = tmp_path / "runs"
    assert gq.gen_root(root, "vgg11-half", "slimming:cut=cost") == \
        gq.gen_root(root, "vgg11-half", "slimming") == root / "vgg11-half" / "gen-slimming"
    # its own λ: its own sparsity training, shared by that training's cuts
    assert gq.method_spec("slimming:sparsity=0.0015:cut=base-cost") == (
        "slimming", {"cut": "base-cost"})
    assert gq.spec_sparsity("slimming:sparsity=0.0015:cut=base-cost") == 0.0015
    assert gq.spec_sparsity("slimming:cut=cost") == "auto"
    own = gq.gen_root(root, "vgg11-half", "slimming:sparsity=1.5e-3")
    assert own == gq.gen_root(root, "vgg11-half", "slimming:cut=cost:sparsity=0.0015") == \
        root / "vgg11-half" / "gen-slimming-sparsity=0.0015"
    for bad, match in (("taylor:sparsity=1e-4", "taylor has no sparsity term"),
                       ("slimming:sparsity=-1", "one positive number"),
                       ("slimming:sparsity=1e-3:sparsity=2e-3", "one positive number"),
                       ("slimming:include_bn1d=true", "not an option of slimming's cut"),
                       ("slimming:cut=knapsack", "cut is one of global, cost"),
                       ("slimming:min_keep=lots", "min_keep: a number")):
        with pytest.raises(SystemExit, match=match):
            gq.method_spec(bad)


def test_a_recorded_search_is_reused_only_with_the_settings_it_ran_with(tmp_path):
    """A search recorded before its settings were kept ran with no final margin: it goes on
    as the `final_margin=off` variant and is refused under the new default, never mixed."""
    import genome_quality as gq

    ledger = gq.Ledger(tmp_path, tmp_path / "legs.json")
    shipped = sq.SearchConfig.from_flat(budget="12.5%FLOPs", out=str(tmp_path / "s"))
    off = sq.SearchConfig.from_flat(budget="12.5%FLOPs", out=str(tmp_path / "s"),
                                    final_margin=None)
    old = {"genome": {}, "val_acc": 0.5}  # no "config": the records of 2026-12-03
    sq.check_recorded_search(old, off, ledger)
    with pytest.raises(SystemExit, match=r"final_margin=None.*final_margin=1\.0.*"
                                         r"--search-option final_margin=off"):
        sq.check_recorded_search(old, shipped, ledger)
    recorded = ledger.put("12.5%FLOPs/search", {"config": sq.searched_settings(shipped)})
    sq.check_recorded_search(gq.Ledger(tmp_path, ledger.path).get("12.5%FLOPs/search"),
                             shipped, ledger)  # as read back from the ledger's JSON
    sq.check_recorded_search(recorded, shipped, ledger)
    other = sq.SearchConfig.from_flat(budget="12.5%FLOPs", out=str(tmp_path / "s"), screen=50)
    with pytest.raises(SystemExit, match="screen=200"):
        sq.check_recorded_search({"config": sq.searched_settings(shipped)}, other, ledger)
    args = sq.parse_args(["--dataset", "cifar10", "--ledger", str(tmp_path / "{space}.json"),
                          "--out", str(tmp_path / "out"), "--search-option",
                          "final_margin=off"])
    assert args.search == {"final_margin": None}


def test_a_searched_genome_equal_to_uniform_is_recognised_by_its_widths():
    from archsearch.budget import parse_budget
    from archsearch.build import bind

    bound = bind("vgg11-half", "cifar10")
    uniform = bound.uniform(parse_budget("12.5%FLOPs"))
    row = {"widths": [uniform.widths[g] for g in bound.graph.prunable], "removed_blocks": []}
    assert sq.is_row_genome(uniform, row, bound)
    wider = dict(uniform.widths)
    first = bound.graph.prunable[0]
    wider[first] += 1
    assert not sq.is_row_genome(bound.genome(wider), row, bound)


def test_the_recorded_fidelity_counts_pairs_within_a_budget_only():
    import evaluator_recorded as er

    # within "a" the scores agree (+1), within "b" they disagree (−1); the pair across
    # budgets, which would agree, is not a pair
    x, y = [1.0, 2.0, 5.0, 3.0], [0.1, 0.2, 0.8, 0.9]
    assert er.stratified_tau(x, y, ["a", "a", "b", "b"]) == 0.0
    assert er.stratified_tau(x, y, ["a", "a", "a", "a"]) == pytest.approx(4 / 6)
    assert er.stratified_tau([1.0, 2.0], [0.1, 0.2], ["a", "b"]) is None
    lo, hi = er.tau_ci(x, y, ["a", "a", "b", "b"], 200)
    assert -1.0 <= lo <= hi <= 1.0
    # the ground truth against itself: seed 0 vs the mean of the others
    genomes = [{"budget": "a", "per_seed": [0.80, 0.81, 0.79]},
               {"budget": "a", "per_seed": [0.70, 0.71, 0.72]},
               {"budget": "a", "per_seed": [0.60, 0.59, 0.61]}]
    assert er.ceiling(genomes) == 1.0


def test_the_recorded_genomes_are_those_at_their_budget_with_two_seeds(tmp_path):
    import json

    import evaluator_recorded as er

    def row(method, macs, seeds, widths=(4, 8)):
        return {"budget": "12.5%FLOPs", "method": method, "macs_ratio": macs,
                "params_ratio": 0.1, "per_seed": [0.8] * seeds, "widths": list(widths),
                "removed_blocks": []}

    gq_doc = {"args": {"dataset": "cifar10"}, "spaces": [{"space": "vgg11-half", "rows": [
        row("uniform", 0.1248, 3), row("slimming", 0.1249, 3, (6, 2)),
        row("uniform@params(slimming)", 0.0345, 3, (3, 5)),
        row("uniform@params(taylor)", 0.1173, 3, (3, 6)), row("taylor", 0.1248, 1, (5, 5))]}]}
    sq_doc = {"args": {"dataset": "cifar10"}, "spaces": [{"space": "vgg11-half", "budgets": [
        {"budget": "12.5%FLOPs", "rows": {"searched": row("x", 0.125, 3, (4, 8)),
                                          "uniform": row("x", 0.1248, 3)}}]}]}
    fm_doc = {"args": {"dataset": "fashion-mnist"}, "spaces": gq_doc["spaces"]}
    paths = []
    for name, doc in (("genome_quality_cifar10", gq_doc),
                      ("search_quality_cifar10_margin-off", sq_doc), ("fm", fm_doc)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    got = er.recorded_genomes([*paths, tmp_path / "missing.json"], "vgg11-half")
    # uniform and the searched genome are one genome (its labels merged); params-matched
    # uniform is at another cost, taylor has one seed, Fashion-MNIST is not CIFAR-10
    assert [g["labels"] for g in got] == [["slimming"], ["uniform", "searched (margin-off)"]]


def test_genome_quality_train_only_splits_a_budgets_legs_between_invocations(tmp_path):
    """`--train-only uniform` trains uniform's legs alone (a real, tiny leg) and leaves the
    generator untrained: its sparsity training is needed by no leg of this invocation; a
    second invocation with `--train-only slimming` would take the rest."""
    import genome_quality as gq

    argv = ["--dataset", "fashion-mnist", "--spaces", "resnet20", "--budgets", "12.5%FLOPs",
            "--methods", "slimming", "--seeds", "1", "--base-seeds", "0", "--epochs", "1",
            "--subset", "64", "--threads", "1", "--runs", str(tmp_path / "runs"),
            "--train-only", "uniform"]
    args = gq.resolve_args(argv)
    root, ledger = gq.open_bench(args)
    doc = gq.run_space("resnet20", args, ledger, root)
    assert sorted(ledger.legs) == ["resnet20/12.5%FLOPs/uniform/s0"]
    assert 0.0 < ledger.legs["resnet20/12.5%FLOPs/uniform/s0"]["test_acc"] < 1.0
    assert [r["method"] for r in doc["rows"]] == ["uniform"] and doc["generators"] == {}
    assert gq.trains("slimming", gq.resolve_args(argv[:-1] + ["uniform,slimming"]))
    assert gq.trains("anything", gq.resolve_args(argv[:-2]))


def test_reuse_adds_a_generators_budgets_cut_elsewhere_but_never_replaces_a_genome(tmp_path):
    """A budget cut in another runs folder from the same sparsity training (same λ, the same
    genome at the budgets both hold) joins the ledger's generator record, so it outlives
    that folder's sparse.pt; a record of another training, or a different genome at a
    shared budget, is left out, and a genome already recorded is kept as it is."""
    import json

    import genome_quality as gq

    def rec(lam, **genomes):
        return {"method": "slimming", "sparsity": lam,
                "genomes": {b: {"widths": {"a": w}, "blocks": {}} for b, w in genomes.items()}}

    key = "resnet20/generate/slimming"
    ledger_path = tmp_path / "L_{space}.legs.json"
    (tmp_path / "L_resnet20.legs.json").write_text(json.dumps({key: rec(1e-3, B12=5)}))
    for name, other in (("same", rec(1e-3, B12=5, LAT=6)), ("lam", rec(2e-3, B12=5, X=7)),
                        ("differs", rec(1e-3, B12=4, Y=8))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "legs.json").write_text(json.dumps({key: other}))
    argv = ["--dataset", "cifar10", "--preset", "cifar", "--runs", str(tmp_path / "runs"),
            "--ledger", str(ledger_path), "--reuse", str(tmp_path / "same"),
            "--reuse", str(tmp_path / "lam"), "--reuse", str(tmp_path / "differs")]
    _, ledger = gq.open_bench(gq.resolve_args(argv), "resnet20")
    assert ledger.get(key)["genomes"] == {"B12": {"widths": {"a": 5}, "blocks": {}},
                                          "LAT": {"widths": {"a": 6}, "blocks": {}}}
    assert ledger.get(key)["sparsity"] == 1e-3


def test_an_evaluator_variant_has_its_settings_and_its_own_folder(capsys):
    import evaluator_recorded as er

    args = er.parse_args(["--evaluators", "supernet,supernet:base_epochs=12:base_subset=0.4"])
    assert args.variants == {"supernet": ("supernet", {}),
                             "supernet:base_epochs=12:base_subset=0.4":
                                 ("supernet", {"base_epochs": 12, "base_subset": 0.4})}
    shipped, variant = (er.work_dir(e, "vgg11-half", args) for e in args.variants)
    assert variant.parent == shipped and variant != shipped
    for bad in ("nosuch", "supernet:base_epochs=x", "supernet:budget=5%FLOPs"):
        with pytest.raises(SystemExit):
            er.parse_args(["--evaluators", bad])
    capsys.readouterr()
