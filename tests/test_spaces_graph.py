"""Spaces build; the channel graph finds groups and blocks on every model without family code."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from archsearch.build import bind
from archsearch.errors import ArchsearchError, GraphError
from archsearch.graph import ChannelGraph
from archsearch.spaces import list_spaces, load_space

REQUIRED = ["vgg11", "vgg16", "vgg19", "resnet20", "resnet56", "resnet110", "preresnet164",
            "resnet18", "resnet50", "mobilenet_v2"]
SPACES = [s.name for s in list_spaces()]  # every registered space, without editing a list


def test_every_required_space_is_listed():
    assert set(REQUIRED) <= set(SPACES)


@pytest.mark.parametrize("name", SPACES)
def test_space_builds_for_dataset_shapes(name):
    space = load_space(name)
    for dataset, shape in (("fashion-mnist", (1, 28, 28)), ("cifar100", (3, 32, 32))):
        model = space.build(dataset).eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
        assert out.shape == (2, 100 if dataset == "cifar100" else 10)


def test_unknown_space_is_a_clear_error():
    with pytest.raises(ArchsearchError, match="unknown space 'nope'.*resnet20"):
        load_space("nope")


def test_space_from_a_new_toml_file_needs_no_python(tmp_path):
    path = tmp_path / "tiny_vgg.toml"
    path.write_text('[model]\nfamily = "vgg"\ncfg = [8, "M", 16]\n[search]\ndivisor = 2\n'
                    'min_width = 2\n[dataset]\ndefault = "synthetic"\n')
    bound = bind(str(path))
    assert bound.graph.prunable == ["features.0", "features.4"]
    assert bound.space.round_width(4.6, 16) == 4 and bound.space.round_width(0.2, 16) == 2


def test_resnet_groups_tie_the_residual_stream():
    graph = bind("resnet20", "cifar10").graph
    stream = graph.groups["layer1.stream"]
    assert set(stream.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2",
                                     "layer1.2.conv2"}
    assert {"bn1", "layer1.0.bn2", "layer1.2.bn2"} <= set(stream.norms)
    assert "layer2.0.shortcut.0" in graph.groups["layer2.stream"].producers
    assert len(graph.prunable) == 12
    # projection-shortcut blocks are not removable; identity ones are
    assert sorted(graph.blocks) == ["layer1.0", "layer1.1", "layer1.2", "layer2.1",
                                    "layer2.2", "layer3.1", "layer3.2"]
    stages = graph.stages()
    assert stages["layer1.stream"] == 0 and stages["layer3.2.conv1"] == 2
    # the logits and the image channels are never prunable
    assert not any(g.prunable for g in graph.groups.values() if "fc" in g.producers)


def test_depthwise_convs_are_tied_to_their_inputs():
    model = torchvision.models.mobilenet_v2(num_classes=10)
    graph = ChannelGraph(model, torch.zeros(1, 3, 32, 32))
    dw = next(c for c in graph.calls if c.module == "features.3.conv.1.0")
    assert dw.depthwise
    assert dw.inputs[0].group == dw.outputs[0].group == "features.3.conv.0.0"
    assert len(graph.blocks) == 10


def test_concatenation_is_handled_by_offsets():
    model = torchvision.models.densenet121(num_classes=10)
    graph = ChannelGraph(model, torch.zeros(1, 3, 32, 32))
    transition = next(c for c in graph.calls if c.module == "features.transition1.conv")
    groups = [s.group for s in transition.inputs]
    assert len(groups) == 7  # stem + six dense layers, concatenated
    assert sum(s.size for s in transition.inputs) == 256
    assert all(graph.groups[g].prunable for g in groups)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


class _HardCodedView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.conv2(x)
        return self.fc(x.view(-1, 128))


def test_untraceable_model_fails_with_a_clear_message():
    with pytest.raises(GraphError, match="cannot trace _DataDependent with torch.fx"):
        ChannelGraph(_DataDependent(), torch.zeros(1, 3, 8, 8))


def test_ops_it_does_not_understand_fix_their_channels():
    graph = ChannelGraph(_HardCodedView(), torch.zeros(1, 3, 4, 4))
    assert graph.prunable == ["conv1"]  # conv2 feeds a view with literal sizes: kept whole
    assert not graph.groups["conv2"].prunable
