"""Open datasets: an image folder the tests make (several classes, non-square images, mixed
RGB/grayscale/RGBA files, names with spaces) is a dataset with no code, through discover,
train and search; every bad folder is one line and exit 2; the fingerprint notices a changed
folder; the known cifar10 reads an image folder; the shared CIFAR-10 copy when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.data import dataset_info, describe, load_data
from archsearch.data._images import load_decoded, scan
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from tests.conftest import SHARED_CIFAR, make_image_folder, needs_shared_cifar

TINY_VGG = '[model]\nfamily = "vgg"\ncfg = [8, "M", 16, "M", 16]\n[search]\nmin_width = 2\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "my data", classes=("cat", "dog house", "emu"),
                             per_class=6, size=(20, 16))


@pytest.fixture
def tiny_space(tmp_path: Path, monkeypatch) -> str:
    path = tmp_path / "spaces" / "tiny.toml"
    path.parent.mkdir()
    path.write_text(TINY_VGG)
    monkeypatch.setenv("ARCHSEARCH_SPACES", str(path.parent))  # genomes name it: tiny
    return "tiny"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("archsearch: error:"), err
    return err


# -- reading a folder ----------------------------------------------------------------------

def test_a_folder_is_a_dataset_with_its_classes_shape_and_statistics(folder):
    info = dataset_info(str(folder))
    assert info.classes == ("cat", "dog house", "emu") and info.num_classes == 3
    assert (info.size, info.channels) == (16, 3)  # the shorter side; colour files present
    assert info.key == str(folder.resolve()) and len(info.fingerprint) == 16
    splits = load_data(info, val_fraction=0.0)
    assert splits.train.images.shape == (18, 3, 16, 16)
    assert splits.test.images.shape == (6, 3, 16, 16)
    assert splits.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    images = splits.train.images.float() / 255
    assert torch.allclose(torch.tensor(splits.mean), images.mean(dim=(0, 2, 3)), atol=1e-3)
    assert torch.allclose(torch.tensor(splits.std), images.std(dim=(0, 2, 3)), atol=2e-3)
    notes = " ".join(splits.notes)
    assert "converted L to RGB" in notes and "converted RGBA to RGB" in notes
    assert "resized to 16×16" in notes


def test_the_decode_is_cached_outside_the_folder_and_keyed_by_its_files(folder):
    found = scan(folder)
    first = load_decoded(found, 16, 3)
    again = load_decoded(scan(folder), 16, 3)
    assert not first.cached and again.cached
    assert torch.equal(first.train, again.train)
    assert not any(p.suffix == ".pt" for p in folder.rglob("*"))  # nothing in the data folder
    # the statistics reach the DatasetInfo of the next bind without a decode
    assert dataset_info(str(folder)).mean == first.mean


def test_a_dataset_file_declares_what_a_folder_cannot(folder, tmp_path):
    spec = tmp_path / "flowers.toml"
    spec.write_text(f'name = "flowers"\npath = "{folder.name}"\nsize = 12\nchannels = 1\n'
                    'mean = [0.5]\nstd = [0.25]\n[augment]\npad = 2\nflip = false\n')
    info = dataset_info(str(spec))
    assert (info.name, info.size, info.channels, info.pad, info.flip) == (
        "flowers", 12, 1, 2, False)
    splits = load_data(info, val_fraction=0.0)
    assert splits.train.images.shape[1:] == (1, 12, 12) and splits.mean == (0.5,)
    assert Genome.from_dict(bind("resnet20", str(spec)).base_genome().to_dict()).dataset == str(
        spec.resolve())


@pytest.mark.parametrize("text, match", [
    ('sizes = 3\n', r"unknown key\(s\) \['sizes'\]"),
    ('[augment]\nrotate = true\n', r"augment\.rotate"),
    ('size = 0\n', "size must be an image size"),
    ('channels = 2\n', "channels must be 1 or 3"),
    ('mean = [0.5]\n', "mean and std need 3 value"),
    ('std = [0.1, 0, 0.1]\n', "std must be positive"),
    ('size = [\n', "cannot read dataset file"),
])
def test_a_bad_dataset_file_is_one_line(folder, capsys, text, match):
    (folder / "dataset.toml").write_text(text)
    with pytest.raises(ArchsearchError, match=match):
        dataset_info(str(folder))
    assert main(["datasets", str(folder)]) == 2
    one_error_line(capsys)


def _empty_class(root: Path) -> None:
    (root / "train" / "fox").mkdir()
    (root / "test" / "fox").mkdir()
    (root / "test" / "fox" / "a.png").write_bytes((root / "test" / "cat").glob(
        "*").__next__().read_bytes())


@pytest.mark.parametrize("damage, match", [
    (lambda r: [p.unlink() for p in r.rglob("*.*")], "holds no images"),
    (_empty_class, "fox holds no images"),
    (lambda r: (r / "test" / "emu").rename(r / "test" / "owl"),
     r"different classes \(only in train/: \['emu'\]; only in test/: \['owl'\]\)"),
    (lambda r: (r / "test").rename(r / "elsewhere"), "not an image-folder dataset"),
    (lambda r: (r / "train" / "cat" / "bad one.jpg").write_bytes(b"not a jpeg"),
     r"cannot (read|decode) image .*bad one\.jpg"),
])
def test_bad_folders_are_one_line_and_exit_2(folder, capsys, damage, match):
    damage(folder)
    assert main(["datasets", str(folder)]) == 2
    assert __import__("re").search(match, one_error_line(capsys))


def test_an_unknown_name_or_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["datasets", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in one_error_line(capsys)
    with pytest.raises(ArchsearchError, match="or a folder of train/<class>"):
        dataset_info("mnist-of-my-dreams")


def test_two_folders_with_one_name_are_two_datasets(tmp_path):
    a = make_image_folder(tmp_path / "a" / "data", classes=("x", "y"), per_class=2)
    b = make_image_folder(tmp_path / "b" / "data", classes=("x", "y", "z"), per_class=2)
    assert bind("resnet20", str(a)).info.num_classes == 2
    assert bind("resnet20", str(b)).info.num_classes == 3


def test_a_large_folder_is_streamed_with_the_same_labels_and_shapes(folder):
    (folder / "dataset.toml").write_text("in_memory = false\n")
    splits = load_data(dataset_info(str(folder)), val_fraction=0.0)
    assert not hasattr(splits.train, "images") and len(splits.train) == 18
    xb, yb = next(splits.test.batches(torch.arange(6), 6, seed=0))
    assert xb.shape == (6, 3, 16, 16) and xb.dtype == torch.uint8
    assert sorted(yb.tolist()) == [0, 0, 1, 1, 2, 2]
    assert any("streamed" in n for n in splits.notes)


def test_a_search_refuses_a_cheap_evaluator_on_a_streamed_folder_before_training(folder,
                                                                                 tmp_path):
    from archsearch.search import SearchConfig, check_inputs

    (folder / "dataset.toml").write_text("in_memory = false\n")
    config = SearchConfig.from_flat(budget="50%FLOPs", out=str(tmp_path / "s"),
                                    space="resnet20", dataset=str(folder),
                                    evaluator="adaptive-bn")
    with pytest.raises(ArchsearchError, match="adaptive-bn needs an in-memory dataset.*"
                                              "--evaluator proxy"):
        check_inputs(config)
    assert not (tmp_path / "s").exists()  # nothing written
    proxy = SearchConfig.from_flat(budget="50%FLOPs", out=str(tmp_path / "p"),
                                   space="resnet20", dataset=str(folder), evaluator="proxy")
    assert check_inputs(proxy)[2].cost["macs_ratio"] <= 0.5


# -- through the commands ------------------------------------------------------------------

def test_datasets_lists_the_known_and_describes_a_folder(folder, capsys):
    assert main(["datasets", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"fashion-mnist", "cifar10"} <= {d["name"] for d in doc["known"]}
    assert "train/<class>" in doc["folders"]
    assert main(["datasets", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["classes"] == ["cat", "dog house", "emu"]
    assert doc["counts"] == {"train": [6, 6, 6], "test": [2, 2, 2]}
    assert (doc["size"], doc["channels"], doc["held"]) == (16, 3, "in memory")


@pytest.mark.slow
def test_discover_train_and_search_on_a_folder(folder, tiny_space, tmp_path, capsys):
    disc = tmp_path / "discover"
    assert main(["discover", "--method", "slimming", "--space", tiny_space, "--dataset",
                 str(folder), "--budget", "50%FLOPs", "--epochs", "1", "--out", str(disc),
                 "--json"]) == 0
    capsys.readouterr()
    genome = Genome.load(disc / "genome.json")
    assert genome.dataset == str(folder.resolve())
    assert genome.provenance["dataset_fingerprint"] == dataset_info(str(folder)).fingerprint

    trained = tmp_path / "train"
    assert main(["train", str(disc / "genome.json"), "--epochs", "1", "--batch-size", "8",
                 "--out", str(trained), "--json"]) == 0  # the genome finds its folder
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == str(folder.resolve()) and 0 <= result["test_acc"] <= 1

    make_image_folder(folder, classes=("cat",), per_class=7, start=100)  # one more image
    assert main(["train", str(disc / "genome.json"), "--epochs", "1", "--batch-size", "8",
                 "--out", str(tmp_path / "again"), "--json"]) == 0
    assert "changed since" in capsys.readouterr().err

    out = tmp_path / "search"
    assert main(["search", "--space", tiny_space, "--dataset", str(folder), "--budget",
                 "50%FLOPs", "--trials", "2", "--screen", "4", "--final", "0",
                 "--proxy-epochs", "1", "--proxy-subset", "1.0", "--base-epochs", "1",
                 "--base-subset", "1.0", "--calib-images", "8", "--out", str(out),
                 "--json"]) == 0  # the default screen: adaptive-bn on a base trained here
    doc = json.loads(capsys.readouterr().out)
    assert doc["tally"]["finished"] == 4 + 2  # screened, then proxy-trained
    assert Genome.load(out / "best_genome.json").dataset == str(folder.resolve())


# -- the known cifar10 from image folders --------------------------------------------------

def test_cifar10_reads_an_image_folder_with_its_own_label_order(tmp_path):
    from archsearch.data._info import CIFAR10_CLASSES

    root = make_image_folder(tmp_path / "c10", classes=CIFAR10_CLASSES, per_class=2,
                             size=(32, 32), modes=("RGB",))
    splits = load_data("cifar10", root=root, val_fraction=0.0)
    assert splits.train.images.shape == (20, 3, 32, 32)
    assert splits.info.name == "cifar10" and splits.pad == 4 and splits.flip
    assert splits.train.labels.tolist() == sorted(list(range(10)) * 2)
    (root / "train" / "truck").rename(root / "train" / "lorry")
    (root / "test" / "truck").rename(root / "test" / "lorry")
    with pytest.raises(ArchsearchError, match="is not cifar10"):
        load_data("cifar10", root=root)


@needs_shared_cifar
def test_the_shared_cifar10_copy_is_scanned_as_cifar10():
    info = dataset_info(str(SHARED_CIFAR))
    assert info.classes == dataset_info("cifar10").classes
    assert (info.size, info.channels, info.num_classes) == (32, 3, 10)
    found = scan(SHARED_CIFAR)
    assert (len(found.train.files), len(found.test.files)) == (50_000, 10_000)


@pytest.mark.slow
@needs_shared_cifar
def test_the_shared_cifar10_copy_loads_as_cifar10():
    doc = describe("cifar10", SHARED_CIFAR)
    assert doc["counts"] == {"train": [5000] * 10, "test": [1000] * 10}
    assert doc["fingerprint"] == scan(SHARED_CIFAR).fingerprint
