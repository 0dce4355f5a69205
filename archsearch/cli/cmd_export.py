"""Export a search's best genomes, or a trained network that runs without archsearch.

Two uses, told apart by the folder given. A search run folder (the --out of `archsearch
search`): write its K best genomes (by validation accuracy; with --objectives accuracy,macs
the Pareto front) as genome files, ready for `archsearch train GENOME.json --schedule
scratch-b` (--top K). A train run folder (the --out of `archsearch train`: checkpoint.pt,
genome.json, config.json): write the trained network as --format onnx (checked through
onnxruntime), pt2 (a torch.export program; torch.export.load runs it) or state-dict (the
weights plus NAME.genome.json; rebuild with archsearch.deploy.rebuild). ONNX and pt2 run
without archsearch; they take images normalised as in training, (x/255 - mean)/std. The
export then times the network against the full-width base of its space at batch 1 and 64,
in torch and onnxruntime (median of --repeats runs after warm-up, --threads threads).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from archsearch.cli._args import add_shared
from archsearch.cli._checks import check_out_dir, check_out_file
from archsearch.cli._common import console, emit, human, print_json
from archsearch.errors import ArchsearchError

FORMAT_CHOICES = ("onnx", "pt2", "state-dict")  # archsearch.deploy.FORMATS (kept light here)
CHECK_IMAGES = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a search run folder (the --out of search: "
                   "--top) or a train run folder (the --out of train: --format)")
    p.add_argument("--top", type=int, metavar="K",
                   help="search run: how many genomes (default 3)")
    p.add_argument("--format", dest="fmt", metavar="FORMAT",
                   help=f"train run: {'|'.join(FORMAT_CHOICES)}")
    add_shared(p, "out", out="search run: the folder to write the genomes to (default "
               "RUN/export); train run: the file (default RUN/export/model.onnx|.pt2|.pt)")
    add_shared(p, "data_root", data_root="train run: where the dataset's files are, for the "
               "check on test images (else $ARCHSEARCH_DATA, then /usr/share/datasets)")
    p.add_argument("--no-speed", action="store_true",
                   help="train run: skip timing the network against the base")
    p.add_argument("--threads", type=int, help="train run: CPU threads the timing uses "
                   "(default: torch's, this machine's cores)")
    p.add_argument("--repeats", type=int, default=10,
                   help="train run: timed runs per measurement (default %(default)s)")
    add_shared(p, "json")


def run(args: argparse.Namespace) -> int:
    from archsearch.deploy import is_train_run

    if is_train_run(args.run):
        return _export_trained(args)
    if args.fmt is not None:
        raise ArchsearchError(f"--format exports a train run, but {args.run} is not a train "
                              "run folder (no checkpoint.pt or train config.json): pass the "
                              "--out folder of `archsearch train`")
    return _export_genomes(args)


def _export_genomes(args: argparse.Namespace) -> int:
    from archsearch.kinds import load_genome
    from archsearch.search import export_genomes, open_run

    top = 3 if args.top is None else args.top
    if top < 1:
        raise ArchsearchError(f"--top must be >= 1, but got {top}")
    if args.out:
        check_out_dir(args.out, "--out")
    search = open_run(args.run)
    paths = export_genomes(search, top, Path(args.out) if args.out else None)
    genomes = [load_genome(p) for p in paths]  # width or sparsity
    if args.json:
        print_json({"run": str(search.run_dir), "genomes": [
            {"path": str(p), "trial": g.provenance["trial"],
             "val_accuracy": g.provenance["val_accuracy"], "cost": g.cost}
            for p, g in zip(paths, genomes, strict=True)]})
        return 0
    for path, genome in zip(paths, genomes, strict=True):
        console.print(f"{path}  trial {genome.provenance['trial']}  val acc "
                      f"{genome.provenance['val_accuracy']:.2%}  MACs "
                      f"{genome.cost['macs_ratio']:.1%}  params {genome.cost['params_ratio']:.1%}")
    return 0


def _check_trained_args(args: argparse.Namespace) -> str:
    from archsearch.deploy import check_format

    if args.top is not None:
        raise ArchsearchError(f"--top picks genomes of a search run, but {args.run} is a "
                              "train run: pass --format")
    if args.fmt is None:
        raise ArchsearchError(f"{args.run} is a train run: pass --format "
                              f"{'|'.join(FORMAT_CHOICES)}")
    check_format(args.fmt)
    if args.threads is not None and args.threads < 1:
        raise ArchsearchError(f"--threads must be >= 1, but got {args.threads}")
    if args.repeats < 1:
        raise ArchsearchError(f"--repeats must be >= 1, but got {args.repeats}")
    return args.fmt


def _export_trained(args: argparse.Namespace) -> int:
    from archsearch.deploy import FORMATS, export_model, max_abs_diff, open_train_run, output_paths

    fmt = _check_trained_args(args)
    trained = open_train_run(args.run)
    out = Path(args.out) if args.out else trained.path / "export" / f"model{FORMATS[fmt][0]}"
    if out.is_dir():
        out = out / f"model{FORMATS[fmt][0]}"
    for path in output_paths(out, fmt):
        check_out_file(path, "--out")
    model = trained.model()
    paths = export_model(model, trained.input_shape, fmt, out, trained.genome.to_dict())
    images, source = _check_images(trained, args.data_root)
    doc: dict[str, Any] = {
        "run": str(trained.path), "format": fmt, "files": [str(p) for p in paths],
        "space": trained.genome.space, "dataset": trained.bound.info.name,
        "input_shape": list(trained.input_shape), "mean": list(trained.bound.info.mean),
        "std": list(trained.bound.info.std), "macs": trained.genome.cost["macs"],
        "macs_ratio": trained.genome.cost["macs_ratio"],
        "check": {"images": source, "count": len(images),
                  "max_abs_diff": max_abs_diff(fmt, paths, model, images)}}
    if not args.no_speed:
        doc["speed"] = _speed(trained, model, args)
    return emit(doc, args.json, _render)


def _check_images(trained: Any, data_root: str | None) -> tuple[Any, str]:
    """A batch of the dataset's test images, normalised as training does; seeded noise when
    the dataset's files are not here."""
    import torch

    from archsearch.data import ImageSet, load_data

    info = trained.bound.info
    try:
        test = load_data(info, data_root, val_fraction=0.0).test
    except ArchsearchError:
        test = None
    if not isinstance(test, ImageSet):  # no files here, or a streamed (ImageNet) folder
        noise = torch.randn(CHECK_IMAGES, *trained.input_shape,
                            generator=torch.Generator().manual_seed(0))
        return noise, "random (the dataset's test images are not in memory)"
    images = test.images[:CHECK_IMAGES]
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std, f"{info.name} test"


def _speed(trained: Any, model: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from archsearch.deploy import RUNTIMES, compare_speed, onnx_available

    threads = args.threads or torch.get_num_threads()
    runtimes = RUNTIMES if onnx_available() else ("torch",)
    rows = compare_speed(model, trained.base_model(), trained.input_shape, threads=threads,
                         runtimes=runtimes, repeats=args.repeats)
    return {"threads": threads, "repeats": args.repeats, "warmup": rows[0].base.warmup,
            "statistic": "median", "precision": "fp32", "device": "cpu",
            "rows": [r.to_dict() for r in rows],
            "note": None if "onnxruntime" in runtimes else "onnxruntime not installed"}


def _render(doc: dict[str, Any]) -> None:
    check = doc["check"]
    console.print(f"[bold]{doc['space']}[/] on {doc['dataset']} → {', '.join(doc['files'])}")
    console.print(f"input: float32 N×{'×'.join(map(str, doc['input_shape']))}, normalised "
                  f"(x/255 - mean)/std with mean {doc['mean']}, std {doc['std']}")
    console.print(f"check: max |exported - trained| = {check['max_abs_diff']:.2e} on "
                  f"{check['count']} {check['images']} images (fp32)")
    if doc["format"] == "state-dict":
        console.print(f"rebuild: archsearch.deploy.rebuild({doc['files'][0]!r}, "
                      f"{doc['files'][1]!r})")
    speed = doc.get("speed")
    if not speed:
        return
    table = Table(title=f"latency on this CPU, {speed['threads']} thread(s), fp32, median of "
                        f"{speed['repeats']} runs after {speed['warmup']} warm-up")
    for col in ("runtime", "batch", "base ms", "pruned ms", "speed-up", "MACs ratio"):
        table.add_column(col, justify="right")
    for row in speed["rows"]:
        table.add_row(row["runtime"], str(row["batch"]), f"{row['base_ms']:.2f}",
                      f"{row['pruned_ms']:.2f}", f"{row['speedup']:.2f}×",
                      f"{doc['macs_ratio']:.1%} ({1 / doc['macs_ratio']:.2f}×)")
    console.print(table)
    if speed["note"]:
        console.print(f"({speed['note']}: torch only)")
    console.print(f"MACs {human(doc['macs'])}; a speed-up below 1/MACs ratio is MACs that the "
                  "runtime does not turn into wall-clock time")
