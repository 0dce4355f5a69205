"""A training run's folder and its checkpoint: config.json, genome.json, metrics.jsonl,
checkpoint.pt (atomic, every epoch) and result.json. A checkpoint loads weights-only and
resumes only under the settings it was trained with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.io import (
    append_jsonl,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from archsearch.train._config import TrainConfig
from archsearch.train._dist import unwrap

CHECKPOINT_FORMAT = "archsearch.checkpoint"
CHECKPOINT_VERSION = 1
RESUME_KEYS = ("schedule", "batch_size", "lr", "momentum", "weight_decay", "seed",
               "train_subset", "augment")


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint written by `train` (weights_only: no code runs on load); `what` names
    it in the one-line errors (e.g. "supernet checkpoint")."""
    if Path(path).exists() and not Path(path).is_file():
        raise ArchsearchError(f"{path} is not a {what} file")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchsearchError(f"no {what} at {path}") from None
    except Exception as exc:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise ArchsearchError(f"cannot load {what} {path}: {_load_error(exc)}") from None
    if not isinstance(doc, dict) or "state_dict" not in doc:
        raise ArchsearchError(f"{path} is not an archsearch {what}")
    return doc


def _load_error(exc: Exception) -> str:
    """torch's weights-only refusal is a page of advice (including to load unsafely): keep
    what was wrong with the file."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(exc).split()))
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Please file| Check the "
                      r"documentation|$)", text)
    if found:
        return (f"not a weights-only checkpoint ({found[1].rstrip('. ')}); archsearch "
                "loads checkpoints weights-only and never runs code from them")
    return text[:300]


class RunFolder:
    """The folder of one `train` run (`path` None: a run that keeps nothing). Only the main
    process (`main`) writes; opening it removes the temp files of writes a kill
    interrupted."""

    def __init__(self, path: str | Path | None, main: bool, config: TrainConfig, epochs: int,
                 genome: Genome | None = None):
        self.path = Path(path) if path is not None else None
        self.writes = self.path is not None and main
        self.config, self.epochs, self.genome = config, epochs, genome
        if self.writes:
            remove_stale_temps(self.path)

    @property
    def checkpoint(self) -> Path | None:
        return self.path / "checkpoint.pt" if self.path is not None else None

    def open(self, model: nn.Module, optimizer: torch.optim.Optimizer, resume: bool
             ) -> tuple[int, list[dict[str, Any]]]:
        """Start the run, or with `resume` continue its checkpoint (model, optimizer and
        torch's RNG restored): the epochs done and their records."""
        ckpt = self.checkpoint
        if ckpt is not None and ckpt.exists():
            if not resume:
                raise ArchsearchError(f"{self.path} already holds a run: pass --resume to "
                                      "continue it, or another --out")
            done, history = self._restore(model, optimizer)
            if self.writes:  # the metrics file holds exactly the checkpointed epochs
                atomic_write_text(self.path / "metrics.jsonl", "".join(
                    json.dumps(r, sort_keys=True) + "\n" for r in history))
            return done, history
        if self.writes:
            assert self.path is not None
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / "config.json",
                              {**self.config.to_dict(), "epochs_run": self.epochs})
            if self.genome is not None:
                self.genome.save(self.path / "genome.json")
            if (self.path / "metrics.jsonl").exists():
                (self.path / "metrics.jsonl").unlink()
        return 0, []

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer,
             history: list[dict[str, Any]]) -> None:
        """Checkpoint after the epoch `history[-1]` records, and append that record."""
        if not self.writes:
            return
        assert self.path is not None and self.checkpoint is not None
        genome = self.genome
        atomic_torch_save(self.checkpoint, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "genome": genome.to_dict() if genome is not None else None,
            "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
            "optimizer": optimizer.state_dict(), "epoch": history[-1]["epoch"],
            "epochs": self.epochs, "history": history, "config": self.config.to_dict(),
            "rng": torch.get_rng_state()})
        append_jsonl(self.path / "metrics.jsonl", history[-1])

    def finish(self, summary: dict[str, Any]) -> None:
        """result.json: the result's `summary`, the config and the genome with its cost."""
        if not self.writes:
            return
        assert self.path is not None
        doc = {**summary, "config": self.config.to_dict()}
        if self.genome is not None:
            doc.update(genome=self.genome.to_dict(), macs=self.genome.cost.get("macs"),
                       params=self.genome.cost.get("params"))
        atomic_write_json(self.path / "result.json", doc)

    def _restore(self, model: nn.Module, optimizer: torch.optim.Optimizer
                 ) -> tuple[int, list[dict[str, Any]]]:
        path = self.checkpoint
        assert path is not None
        doc = load_checkpoint(path)
        saved = doc.get("config", {})
        changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(self.config, k)]
        if doc.get("epochs") != self.epochs:
            changed.append("epochs")
        if changed:
            raise ArchsearchError(
                f"cannot resume {path}: it was trained with different settings "
                f"({', '.join(f'{k}={saved.get(k, doc.get(k))!r}' for k in changed)}); "
                "rerun with the same options, or use another --out")
        try:
            unwrap(model).load_state_dict(doc["state_dict"])
            optimizer.load_state_dict(doc["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ArchsearchError(f"checkpoint {path} does not fit this model: "
                                  f"{str(exc).splitlines()[0]}") from None
        if isinstance(doc.get("rng"), torch.Tensor):
            torch.set_rng_state(doc["rng"])
        return int(doc["epoch"]), list(doc.get("history", []))
