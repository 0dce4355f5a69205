"""List the datasets, or describe one (a known name or an image folder).

Without an argument: the datasets known by name and how any image folder is given. With a
name, an image folder (train/<class>/<image> and test/<class>/<image>, or val/) or a dataset
file: its classes, images per class, image size and channels, mean/std, fingerprint and what
loading changed. Describing a folder reads it (the first read decodes every image, once,
into a cache outside the folder: $ARCHSEARCH_CACHE, else ~/.cache/archsearch).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from archsearch.cli._args import add_shared
from archsearch.cli._common import console, emit, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="a known name, an image folder or a dataset .toml file")
    add_shared(p, "data_root", "json")


def run(args: argparse.Namespace) -> int:
    from archsearch.data import FOLDER_HELP, describe, known_datasets

    if args.dataset is None:
        rows = known_datasets()
        if args.json:
            print_json({"known": rows, "folders": FOLDER_HELP})
            return 0
        table = Table(title="datasets")
        for col in ("name", "size", "channels", "classes", "augment", "files"):
            table.add_column(col, justify="right" if col in ("size", "channels", "classes")
                             else "left")
        for r in rows:
            table.add_row(r["name"], str(r["size"]), str(r["channels"]), str(r["classes"]),
                          r["augment"], r["files"])
        console.print(table)
        console.print(FOLDER_HELP, highlight=False)
        return 0
    with console.status(f"reading {args.dataset} …", spinner="dots"):
        doc = describe(args.dataset, args.data_root)
    return emit(doc, args.json, _render)


def _render(doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['name']}: {doc['channels']}×{doc['size']}×{doc['size']}, "
                        f"{len(doc['classes'])} classes ({doc['held']})")
    for col in ("class", "train", "test"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(doc["classes"]):
        table.add_row(name, str(doc["counts"]["train"][i]), str(doc["counts"]["test"][i]))
    table.add_row("[bold]all[/]", str(sum(doc["counts"]["train"])),
                  str(sum(doc["counts"]["test"])))
    console.print(table)
    stats = ", ".join(f"{m:.4f}±{s:.4f}" for m, s in zip(doc["mean"], doc["std"], strict=True))
    console.print(f"mean±std per channel: {stats}; augmentation: pad {doc['pad']}, "
                  f"flip {'on' if doc['flip'] else 'off'}", highlight=False)
    console.print(f"dataset: {doc['dataset']}; fingerprint {doc['fingerprint'] or '—'}; "
                  f"loaded in {doc['load_s']:.1f} s", highlight=False)
    for note in doc["notes"]:
        console.print(f"note: {note}", highlight=False)
