"""Models from outside archsearch: a user's Python builder (`family = "python"`) and timm
(`family = "timm"`): built for the dataset's shapes, traced, costed exactly (== thop), shrunk,
and run through discover / train / search / rethink; bad builders refused in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.cost import thop_cost
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from torchvision_coverage import check  # noqa: E402

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels, num_classes, width):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def make_net(width, in_channels, num_classes, input_size):
    net = Net(in_channels, num_classes, width)
    net.told_size = input_size
    return net


def classes_only(num_classes, width=8):
    return Net(3, num_classes, width)
'''


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _space(path: Path, model: str, size: int = 16) -> str:
    return _write(path, f'[model]\n{model}\n[dataset]\ndefault = "synthetic"\nsize = {size}\n')


def _exit_2(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_builder_file_relative_to_the_space_file_is_a_space(tmp_path, monkeypatch):
    _write(tmp_path / "models" / "nets.py", NETS)
    path = _space(tmp_path / "spaces" / "mine.toml",
                  'family = "python"\nbuilder = "../models/nets.py:make_net"\nwidth = 12')
    monkeypatch.chdir(tmp_path / "models")  # relative to the space file, not to the cwd
    bound = bind(path)
    base = bound.base_model()
    assert base.told_size == 16 and base.conv1.weight.shape == (12, 3, 3, 3)
    assert base(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    assert set(bound.graph.prunable) == {"conv1", "conv2"}
    assert bound.base_cost == thop_cost(base, bound.info.input_shape)
    half = bound.uniform(parse_budget("50%FLOPs"))
    small = bound.build(half)
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    ref = thop_cost(small, bound.info.input_shape)
    assert (half.cost["macs"], half.cost["params"]) == (ref.macs, ref.params)
    assert half.cost["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    gray = bind(path, "fashion-mnist").base_model()  # the dataset's channels and size
    assert gray.conv1.weight.shape == (12, 1, 3, 3) and gray.told_size == 16


def test_a_builder_by_module_name_gets_only_what_its_signature_takes(tmp_path, monkeypatch):
    _write(tmp_path / "mypkg" / "__init__.py", "")
    _write(tmp_path / "mypkg" / "nets.py", NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _space(tmp_path / "mod.toml", 'family = "python"\nbuilder = "mypkg.nets:classes_only"')
    model = bind(path).base_model()
    assert model.fc.out_features == 10 and model.conv1.out_channels == 8


BAD_BUILDERS = [
    ('builder = "missing.py:make_net"', None, "builder file not found: "),
    ('builder = "nets.py"', None, 'builder = "file.py:function"'),
    ('builder = "nets.py:make_net"\nnum_classes = 3', NETS, "come from the dataset"),
    ('builder = "no_such_package_xyz.nets:f"', None, "builder module 'no_such_package_xyz.nets'"),
    ('builder = "nets.py:make_net"', "raise RuntimeError('boom at import')\n",
     "fails on import: RuntimeError: boom at import"),
    ('builder = "nets.py:make_net"', "x = 1\n", "has no function 'make_net'"),
    ('builder = "nets.py:make_net"', "def make_net(**kw):\n    raise ValueError('bad width')\n",
     "raised ValueError: bad width"),
    ('builder = "nets.py:make_net"', "def make_net(**kw):\n    return 42\n",
     "returned int, not an nn.Module"),
    ('builder = "nets.py:make_net"',
     "import torch\nclass B(torch.nn.Module):\n    def __init__(self):\n"
     "        super().__init__()\n        self.conv = torch.nn.Conv2d(3, 4, 3)\n"
     "    def forward(self, x):\n        return self.conv(x) if x.sum() > 0 else x\n"
     "def make_net():\n    return B()\n", "cannot trace B with torch.fx"),
]


@pytest.mark.parametrize(("model", "source", "message"), BAD_BUILDERS)
def test_a_bad_builder_is_one_line_exit_2_and_nothing_is_written(tmp_path, capsys, model,
                                                                  source, message):
    if source is not None:
        _write(tmp_path / "nets.py", source)
    path = _space(tmp_path / "bad.toml", f'family = "python"\n{model}')
    out = tmp_path / "run"
    err = _exit_2(capsys, "discover", "--method", "slimming", "--budget", "50%FLOPs",
                  "--space", path, "--epochs", "1", "--subset", "32", "--out", str(out))
    assert message in err
    assert not out.exists()


@pytest.mark.slow
def test_a_builder_from_a_file_discovers_and_trains(tmp_path, capsys, monkeypatch):
    _write(tmp_path / "nets.py", NETS)
    _space(tmp_path / "mine.toml", 'family = "python"\nbuilder = "nets.py:make_net"\nwidth = 16')
    monkeypatch.setenv("ARCHSEARCH_SPACES", str(tmp_path))  # the genome names its space
    assert main(["discover", "--method", "slimming", "--budget", "50%FLOPs", "--space", "mine",
                 "--epochs", "1", "--subset", "64", "--batch-size", "32", "--out",
                 str(tmp_path / "d"), "--json"]) == 0
    genome = Genome.load(tmp_path / "d" / "genome.json")
    assert genome.space == "mine" and genome.cost["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "d" / "genome.json"), "--schedule", "scratch-b",
                 "--epochs", "1", "--subset", "64", "--out", str(tmp_path / "t"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert 0 <= doc["test_acc"] <= 1 and (tmp_path / "t" / "checkpoint.pt").exists()


# timm: an optional extra (pip install 'archsearch[timm]')

TIMM_FAST = ["resnet10t", "mobilenetv3_small_050", "vit_tiny_patch16_224", "convnext_atto"]


@pytest.mark.parametrize("name", TIMM_FAST)
def test_timm_models_trace_prune_shrink_and_cost_what_thop_counts(name):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    row = check(name, "timm", 32)
    assert row["ok"], f"{name} fails at {row['stage']}: {row.get('error')}"
    assert row["share"] > 0.4 and row["groups"] > 0


# bench/results/timm_coverage.md: the stage each failing model stops at (a fix shows here)
TIMM_KNOWN_FAILURES = {
    "ecaresnet26t": "base cost", "edgenext_xx_small": "base cost", "hrnet_w18_small": "base cost",
    "levit_128s": "base cost", "swin_tiny_patch4_window7_224": "base cost",
    "mobilevit_xxs": "trace", "tf_efficientnetv2_b0": "trace", "ghostnetv2_100": "50% genome",
    "mixnet_s": "50% genome", "nf_resnet26": "50% genome", "resnest14d": "50% genome",
    "resnet50_gn": "50% genome", "skresnet18": "50% genome"}


def _timm_models() -> dict[str, int]:
    from timm_coverage import MODELS

    return MODELS


@pytest.mark.registry
@pytest.mark.parametrize("name", sorted(_timm_models()))
def test_every_surveyed_timm_model(name):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    row = check(name, "timm", _timm_models()[name])
    if name in TIMM_KNOWN_FAILURES:
        assert not row["ok"] and row["stage"] == TIMM_KNOWN_FAILURES[name], row
    else:
        assert row["ok"], f"{name} fails at {row['stage']}: {row.get('error')}"


def test_timm_models_are_built_for_the_dataset(tmp_path):
    pytest.importorskip("timm")
    bound = bind(_space(tmp_path / "r.toml", 'family = "timm"\nname = "resnet10t"'),
                 "fashion-mnist")
    model = bound.base_model()
    assert next(model.parameters()).shape[1] == 1  # in_chans from the dataset
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    vit = bind(_space(tmp_path / "v.toml", 'family = "timm"\nname = "vit_tiny_patch16_224"',
                      32)).base_model()
    assert vit.patch_embed.img_size == (32, 32)  # img_size follows the input size


def test_timm_norm_act_layers_keep_their_train_mode_after_shrink(tmp_path):
    """timm's BatchNormAct2d branches on self.training: traced as a leaf, the shrunk model
    still normalises by the batch (and updates its statistics) in train mode."""
    pytest.importorskip("timm")
    bound = bind(_space(tmp_path / "mnv2.toml", 'family = "timm"\nname = "mobilenetv2_050"', 32))
    small = bound.build(bound.uniform(parse_budget("50%FLOPs")))
    norms = [m for m in small.modules() if type(m).__name__ == "BatchNormAct2d"]
    assert norms and all(m.num_features == m.weight.numel() for m in norms)
    before = norms[3].running_mean.clone()
    small.train()
    small(torch.randn(4, 3, 32, 32) * 3 + 1).sum().backward()
    assert not torch.equal(before, norms[3].running_mean)
    small.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(small(x), small(x))


def test_timm_spaces_refuse_what_archsearch_sets_and_unknown_models(tmp_path, capsys):
    pytest.importorskip("timm")
    own = _space(tmp_path / "pre.toml", 'family = "timm"\nname = "resnet18"\npretrained = true')
    assert "are set by archsearch" in _exit_2(capsys, "show", own)
    unknown = _space(tmp_path / "unk.toml", 'family = "timm"\nname = "resnet_nonesuch"')
    assert "unknown timm model 'resnet_nonesuch'" in _exit_2(capsys, "show", unknown)


def test_timm_not_installed_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    path = _space(tmp_path / "t.toml", 'family = "timm"\nname = "resnet18d"')
    err = _exit_2(capsys, "show", path, "--budget", "50%FLOPs")
    assert "needs the timm package: pip install 'archsearch[timm]'" in err
    with pytest.raises(ArchsearchError, match="needs the timm package"):
        from archsearch.models import build_family

        build_family("timm", 3, 10, 32, name="resnet18d")


@pytest.mark.slow
def test_a_timm_model_end_to_end(tmp_path, capsys, monkeypatch):
    """discover → train → search (guided by the genome) → rethink, on timm's resnet10t."""
    pytest.importorskip("timm")
    _space(tmp_path / "t10.toml", 'family = "timm"\nname = "resnet10t"')
    monkeypatch.setenv("ARCHSEARCH_SPACES", str(tmp_path))
    tiny = ["--subset", "32", "--batch-size", "32"]
    assert main(["discover", "--method", "slimming", "--budget", "50%FLOPs", "--space", "t10",
                 "--epochs", "1", *tiny, "--out", str(tmp_path / "d"), "--json"]) == 0
    genome = Genome.load(tmp_path / "d" / "genome.json")
    assert genome.cost["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    assert main(["train", str(tmp_path / "d" / "genome.json"), "--schedule", "scratch-e",
                 "--epochs", "1", "--subset", "32", "--out", str(tmp_path / "t"), "--json"]) == 0
    assert main(["search", "--budget", "50%FLOPs", "--space", "t10", "--trials", "2",
                 "--proxy-epochs", "1", "--proxy-subset", "32", "--proxy-val", "32",
                 "--evaluator", "proxy", "--final", "0", "--guide",
                 str(tmp_path / "d" / "genome.json"), "--out", str(tmp_path / "s"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["rethink", "--method", "slimming", "--budget", "50%FLOPs", "--space", "t10",
                 "--epochs", "1", *tiny, "--seeds", "1", "--finetune-epochs", "1",
                 "--test-subset", "32", "--out", str(tmp_path / "r"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (tmp_path / "r" / "rethink.md").exists() and doc
