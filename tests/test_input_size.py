"""--input-size: any space at a chosen image size, from the data loaders' resize to the
model's cost (the mechanism `show --input-size` and a space's `[dataset] size` use)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.data import ImageSet, dataset_info, load_data
from archsearch.data._loaders import resized

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(),
                                  reason="Debian package dataset-fashion-mnist not installed")


def test_resize_keeps_labels_and_flat_images_and_scales_a_pattern():
    images = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    images[0] = 200  # flat: stays 200 everywhere
    images[1, :, :, :14] = 255  # left half white: the left half stays white at 40
    out = resized(ImageSet(images, torch.tensor([4, 5, 6]), "x"), 40)
    assert out.images.shape == (3, 1, 40, 40) and out.images.dtype == torch.uint8
    assert out.labels.tolist() == [4, 5, 6]
    assert (out.images[0] == 200).all() and (out.images[2] == 0).all()
    assert (out.images[1, :, :, :19] == 255).all() and (out.images[1, :, :, 21:] == 0).all()
    same = ImageSet(images, torch.tensor([4, 5, 6]), "x")
    assert resized(same, 28) is same


def test_synthetic_data_is_made_at_the_size_asked():
    info = replace(dataset_info("synthetic"), size=20)
    splits = load_data(info, size=64, val_fraction=0.25)
    assert splits.train.images.shape[1:] == (3, 20, 20)
    assert splits.test.images.shape[1:] == (3, 20, 20)


def test_discover_costs_the_genome_at_the_input_size(tmp_path, capsys):
    argv = ["discover", "--method", "uniform", "--budget", "50%FLOPs", "--space", "resnet20",
            "--json"]
    assert main([*argv, "--input-size", "40", "--out", str(tmp_path / "a")]) == 0
    at40 = json.loads(capsys.readouterr().out)
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    at28 = json.loads(capsys.readouterr().out)
    bound40 = bind("resnet20", "fashion-mnist", input_size=40)
    assert at40["base_cost"]["macs"] == bound40.base_cost.macs
    assert at28["base_cost"]["macs"] == bind("resnet20", "fashion-mnist").base_cost.macs
    assert at40["base_cost"]["macs"] > 1.9 * at28["base_cost"]["macs"]  # (40/28)^2 = 2.04
    assert at40["cost"]["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    # the genome file records the size it was costed at; the one at the native size does not
    assert json.loads((tmp_path / "a" / "genome.json").read_text())["input_size"] == 40
    assert "input_size" not in json.loads((tmp_path / "b" / "genome.json").read_text())


def test_bad_input_size_is_one_line_exit_2(tmp_path, capsys):
    code = main(["discover", "--method", "uniform", "--budget", "50%FLOPs", "--input-size", "0",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "1..4096" in err


@needs_fmnist
def test_train_at_input_size_40_sees_40_pixel_images(tmp_path, capsys, monkeypatch):
    import archsearch.train as training

    genome = bind("vgg11-half", "fashion-mnist").uniform(parse_budget("20%FLOPs"))
    genome.save(tmp_path / "g.json")
    seen: list[tuple[int, ...]] = []
    real_train = training.train

    def watched(model, splits, *args, **kwargs):
        model.register_forward_pre_hook(lambda _m, inputs: seen.append(tuple(inputs[0].shape)))
        return real_train(model, splits, *args, **kwargs)

    monkeypatch.setattr(training, "train", watched)
    code = main(["train", str(tmp_path / "g.json"), "--input-size", "40", "--epochs", "1",
                 "--subset", "96", "--batch-size", "32", "--device", "cpu", "--out",
                 str(tmp_path / "run"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert seen and {s[1:] for s in seen} == {(1, 40, 40)}  # training and evaluation
    at40 = bind("vgg11-half", "fashion-mnist", input_size=40).with_cost(genome)
    assert doc["macs"] == at40.cost["macs"]
    assert doc["macs"] > bind("vgg11-half", "fashion-mnist").with_cost(genome).cost["macs"]


# -- genomes record their input size ---------------------------------------------------------

def _conv_input_sizes() -> tuple[set[tuple[int, ...]], object]:
    """Every (channels, height, width) an image-reading conv (3 input channels) is called
    on in this process, and the hook's handle."""
    seen: set[tuple[int, ...]] = set()

    def hook(module, inputs):
        x = inputs[0] if inputs else None
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3 and \
                type(x) is torch.Tensor:
            seen.add(tuple(x.shape[1:]))

    return seen, torch.nn.modules.module.register_module_forward_pre_hook(hook)


def _show_json(capsys, *argv: str) -> dict:
    assert main(["show", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_search_at_an_input_size_screens_trains_records_exports_and_refuses_another(
        tmp_path, capsys):
    """A tiny three-fidelity search (adaptive-bn screen on a base it trains, proxy, final)
    at 24 px on the synthetic set (32 px natively): every forward pass sees 24 px, the
    config and every trial's genome record 24, export/show/report use it, and resuming at
    another size is one line, exit 2."""
    from archsearch.genome import Genome
    from archsearch.search import open_run

    run = tmp_path / "run"
    argv = ["search", "--budget", "50%FLOPs", "--space", "vgg11-half", "--dataset",
            "synthetic", "--screen", "3", "--trials", "2", "--final", "1", "--base-epochs", "1",
            "--base-subset", "128", "--calib-images", "32", "--screen-val", "32",
            "--proxy-epochs", "1", "--proxy-subset", "128", "--proxy-val", "32",
            "--final-epochs", "1", "--final-subset", "128", "--batch-size", "64",
            "--early-stop", "none", "--out", str(run), "--json"]
    seen, handle = _conv_input_sizes()
    try:
        assert main([*argv, "--input-size", "24"]) == 0
    finally:
        handle.remove()
    doc = json.loads(capsys.readouterr().out)
    assert seen == {(3, 24, 24)}  # base training, screen, proxy and final trials
    assert json.loads((run / "search.json").read_text())["input_size"] == 24
    assert doc["tally"]["finished"] == 6

    at24, native = bind("vgg11-half", "synthetic", input_size=24), bind("vgg11-half", "synthetic")
    trials = open_run(run).trials()
    assert {t.user_attrs["fidelity"] for t in trials} == {"screen", "proxy", "final"}
    for trial in trials:
        genome = Genome.from_dict(trial.user_attrs["genome"])
        assert genome.input_size == 24
        assert genome.cost["macs"] == at24.costs.cost(genome.widths, genome.blocks).macs
        assert genome.cost["macs"] < 0.7 * native.costs.cost(genome.widths, genome.blocks).macs

    assert main(["export", str(run), "--top", "1", "--out", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    exported = next((tmp_path / "x").glob("top*.json"))
    assert Genome.load(exported).input_size == 24
    shown = _show_json(capsys, str(exported))
    assert shown["input_size"] == 24 and shown["base_macs"] == at24.base_cost.macs
    assert main(["report", str(run), "--top", "3"]) == 0
    assert (run / "report" / "best_widths.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    err = _one_line_exit_2(capsys, [*argv, "--input-size", "16"])
    assert "'input_size': 24" in err
    _one_line_exit_2(capsys, argv)  # the default size is another size too


@pytest.fixture
def genome_at_40(tmp_path, capsys) -> Path:
    """resnet20's uniform 50% genome on the synthetic set (32 px natively) at 40 px, as
    `show --budget --input-size` emits it."""
    doc = _show_json(capsys, "resnet20", "--dataset", "synthetic", "--budget", "50%FLOPs",
                     "--input-size", "40")
    assert doc["genome"]["input_size"] == 40 and doc["input_size"] == 40
    path = tmp_path / "g40.json"
    path.write_text(json.dumps(doc["genome"]))
    return path


def test_a_genome_at_40_is_shown_and_trained_at_40_without_the_flag(genome_at_40, tmp_path,
                                                                    capsys):
    from archsearch.genome import Genome

    genome = Genome.load(genome_at_40)
    at40 = bind("resnet20", "synthetic", input_size=40)
    native = bind("resnet20", "synthetic").costs.cost(genome.widths, genome.blocks)
    expected = at40.costs.cost(genome.widths, genome.blocks)
    shown = _show_json(capsys, str(genome_at_40))
    assert shown["macs"] == expected.macs and shown["base_macs"] == at40.base_cost.macs
    assert shown["macs"] > 1.5 * native.macs  # (40/32)^2 = 1.56
    assert _show_json(capsys, str(genome_at_40), "--input-size", "40")["macs"] == expected.macs

    seen, handle = _conv_input_sizes()
    try:
        code = main(["train", str(genome_at_40), "--epochs", "1", "--subset", "64",
                     "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path / "run"),
                     "--json"])
    finally:
        handle.remove()
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and seen == {(3, 40, 40)}
    assert doc["macs"] == expected.macs and doc["input_size"] == 40
    assert Genome.load(tmp_path / "run" / "genome.json").input_size == 40


def test_an_input_size_that_disagrees_with_the_genome_is_one_line_exit_2(genome_at_40,
                                                                         tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["show", str(genome_at_40), "--input-size", "32"])
    assert "input size 40" in err and "--input-size 32" in err
    out = tmp_path / "never"
    _one_line_exit_2(capsys, ["train", str(genome_at_40), "--input-size", "32", "--epochs",
                              "1", "--out", str(out)])
    assert not out.exists()


def test_a_genome_without_input_size_loads_at_the_default_and_takes_the_flag(tmp_path,
                                                                              capsys):
    from archsearch.genome import Genome

    old = {"format": "archsearch.genome", "version": 1, "space": "resnet20",
           "dataset": "synthetic", "widths": {"layer1.0.conv1": 8}, "blocks": {},
           "provenance": {"method": "hand"}, "cost": {}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    genome = Genome.load(path)
    assert genome.input_size is None and "input_size" not in genome.to_dict()
    for size in (None, 40):
        bound = bind("resnet20", "synthetic", input_size=size)
        shown = _show_json(capsys, str(path), *(["--input-size", str(size)] if size else []))
        assert shown["input_size"] == bound.info.size
        assert shown["macs"] == bound.costs.cost(genome.widths, genome.blocks).macs
    made = bind("resnet20", "synthetic").uniform(parse_budget("50%FLOPs"))
    assert made.input_size is None and "input_size" not in made.to_dict()


@pytest.mark.parametrize("size", [0, 5000, "40", True, 40.0])
def test_a_bad_recorded_input_size_is_one_line_exit_2(tmp_path, capsys, size):
    doc = bind("resnet20", "synthetic", input_size=40).uniform(parse_budget("50%FLOPs")).to_dict()
    doc["input_size"] = size
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert "'input_size' must be an image size" in _one_line_exit_2(capsys, ["show", str(path)])


def test_a_sparsity_genome_records_its_input_size(tmp_path, capsys):
    from archsearch.sparsity import SparsityGenome, make_genome, sparse_cost

    at40 = bind("resnet20", "synthetic", input_size=40)
    genome = make_genome(at40, {"conv1": 0.5, "layer1.0.conv1": 0.25})
    path = genome.save(tmp_path / "sparse.json")
    assert SparsityGenome.load(path).input_size == 40
    shown = _show_json(capsys, str(path))
    assert shown["input_size"] == 40
    assert shown["macs"] == sparse_cost(at40, genome.density)["macs"]
    _one_line_exit_2(capsys, ["show", str(path), "--input-size", "32"])


@pytest.mark.parametrize("kind", ["width", "sparsity"])
def test_a_search_checks_and_makes_its_genomes_at_its_input_size(tmp_path, kind):
    """Both genome kinds: the search's space and its uniform baseline are at the size."""
    from archsearch.search import SearchConfig, check_inputs

    config = SearchConfig.from_flat(budget="50%params", out=str(tmp_path / "run"), space="resnet20",
                                    dataset="synthetic", input_size=40, evaluator="proxy",
                                    genome_kind=kind)
    assert config.identity()["input_size"] == 40
    assert "input_size" not in SearchConfig(budget="50%params", out="x").identity()
    bound, _, uniform, _, _ = check_inputs(config)
    assert bound.info.size == 40 and uniform.input_size == 40
    assert bound.base_cost.macs == bind("resnet20", "synthetic", input_size=40).base_cost.macs
    native = bind("resnet20", "synthetic").base_cost.macs
    assert uniform.cost["macs"] > 1.5 * uniform.cost["macs_ratio"] * native  # (40/32)^2
