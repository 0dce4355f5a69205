"""How the trainer reports while it runs: a `TrainProgress` gets `on_start`, `on_step` (after
every optimizer step), `on_epoch` (after every epoch, with its record) and `on_end`. The
trainer draws nothing itself: the CLI passes its progress bar (archsearch.cli._progress);
a library caller passes its own, or `True` for one log line per epoch."""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger("archsearch.train")


class TrainProgress(Protocol):
    def on_start(self, epochs: int, steps: int, done: int) -> None: ...

    def on_step(self, epoch: int) -> None: ...

    def on_epoch(self, record: dict[str, Any]) -> None: ...

    def on_end(self) -> None: ...


class LogProgress:
    """One INFO log line per epoch (what `progress=True` means without the CLI)."""

    def on_start(self, epochs: int, steps: int, done: int) -> None:
        pass

    def on_step(self, epoch: int) -> None:
        pass

    def on_epoch(self, r: dict[str, Any]) -> None:
        log.info("epoch %d/%d: loss %.3f, %s acc %.2f%%, %.0f img/s", r["epoch"], r["epochs"],
                 r["train_loss"], r["eval_split"], 100 * r["eval_acc"], r["images_per_s"])

    def on_end(self) -> None:
        pass


class _Silent(LogProgress):
    def on_epoch(self, r: dict[str, Any]) -> None:
        pass


def reporter(progress: bool | TrainProgress | None, main: bool) -> TrainProgress:
    """The reporter for `train(progress=...)`: only the main process reports."""
    if not main or progress is None or progress is False:
        return _Silent()
    return LogProgress() if progress is True else progress
