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
