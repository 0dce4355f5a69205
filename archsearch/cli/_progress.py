"""The CLI's training progress bar: a rich bar over all steps of all epochs, passed to the
trainer as its `progress` (archsearch.train.TrainProgress); reusable across runs."""

from __future__ import annotations

from typing import Any

from rich.console import Console


class ProgressBar:
    def __init__(self, console: Console):
        self.console = console
        self.progress: Any = None

    def on_start(self, epochs: int, steps: int, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[ep]}/{task.fields[epochs]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=epochs * steps,
                                           completed=done * steps, ep=done + 1, epochs=epochs,
                                           info="")

    def on_step(self, epoch: int) -> None:
        self.progress.update(self.task, advance=1, ep=epoch + 1)

    def on_epoch(self, r: dict[str, Any]) -> None:
        self.progress.update(self.task, info=(
            f"loss {r['train_loss']:.3f}  {r['eval_split']} acc {r['eval_acc']:.2%}  "
            f"{r['images_per_s']:.0f} img/s"))

    def on_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def progress_bar(enabled: bool) -> ProgressBar | None:
    """The bar on the CLI's console, or None (e.g. with --json)."""
    from archsearch.cli._common import console

    return ProgressBar(console) if enabled else None
