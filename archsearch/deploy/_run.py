"""A train run folder reopened for deployment: its genome, its space and its trained weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archsearch.build import BoundSpace, bind_genome
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.train import load_checkpoint

CHECKPOINT = "checkpoint.pt"


def is_train_run(path: str | Path) -> bool:
    """A folder `archsearch train` wrote: a checkpoint.pt, or a config.json that records the
    epochs it ran (a run stopped before its first checkpoint)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    if (folder / CHECKPOINT).is_file():
        return True
    try:
        doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "epochs_run" in doc


@dataclass
class TrainedRun:
    """The trained network of one train run: genome (with its cost), bound space, weights."""

    path: Path
    genome: Genome
    bound: BoundSpace
    state_dict: dict[str, torch.Tensor]
    epoch: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape (channels, height, width) the network takes."""
        return tuple(self.bound.info.input_shape)

    def model(self) -> nn.Module:
        """The trained network in eval mode, fp32, contiguous weights, on the CPU."""
        model = self.bound.build(self.genome)
        model.load_state_dict(self.state_dict)
        return _plain(model)

    def base_model(self) -> nn.Module:
        """The full-width model of the same space (fresh weights): the speed reference."""
        return _plain(self.bound.base_model())


def _plain(model: nn.Module) -> nn.Module:
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def open_train_run(path: str | Path) -> TrainedRun:
    """The trained network of the train run folder `path` (its checkpoint loads weights-only;
    the genome is the checkpoint's, else the folder's genome.json)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ArchsearchError(f"{folder} is not a folder: pass the --out folder of "
                              "`archsearch train`")
    ckpt = folder / CHECKPOINT
    if not ckpt.is_file():
        raise ArchsearchError(f"{folder} holds no {CHECKPOINT}: the train run has not "
                              "finished an epoch yet (or this is not a train run folder)")
    doc = load_checkpoint(ckpt)
    genome = _genome(folder, doc.get("genome"))
    bound = bind_genome(genome, source=str(folder / "genome.json"))
    bound.validate(genome)
    genome = bound.with_cost(genome)
    state = doc["state_dict"]
    try:  # fail here, with the run named, rather than in an exporter
        bound.build(genome).load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArchsearchError(f"checkpoint {ckpt} does not fit the genome of the run: "
                              f"{str(exc).splitlines()[0]}") from None
    return TrainedRun(folder, genome, bound, state, int(doc.get("epoch", 0)))


def _genome(folder: Path, recorded: object) -> Genome:
    if isinstance(recorded, dict):
        return Genome.from_dict(recorded, source=str(folder / CHECKPOINT))
    if not (folder / "genome.json").is_file():
        raise ArchsearchError(f"{folder} holds no genome.json and its checkpoint names no "
                              "genome: it was not written by `archsearch train GENOME.json`")
    return Genome.load(folder / "genome.json")


def rebuild(state_dict_path: str | Path, genome_path: str | Path) -> nn.Module:
    """The network of a `--format state-dict` export: `bind_genome(genome).build(genome)`,
    then its weights (loaded weights-only), in eval mode."""
    genome = Genome.load(genome_path)
    bound = bind_genome(genome, source=str(genome_path))
    model = bound.build(genome)
    try:
        state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise ArchsearchError(f"no state dict at {state_dict_path}") from None
    except Exception as exc:  # noqa: BLE001 (an unreadable or foreign file is bad input)
        raise ArchsearchError(f"cannot load {state_dict_path} into the genome of "
                              f"{genome_path}: {str(exc).splitlines()[0][:300]}") from None
    return model.eval()
