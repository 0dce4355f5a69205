"""Training throughput: archsearch's engine against the paper's code path, side by side.

The reference is a plain PyTorch pipeline as in the paper's code: a Dataset returning PIL
images, torchvision transforms (pad-crop, flip, ToTensor, Normalize), a DataLoader with
worker processes, fp32, NCHW. The engine is `archsearch.train.train`: uint8 data in
memory, batched tensor augmentation, channels_last, autocast where the CPU has native
bf16. Same model, same data, same batch size; rounds alternate between the two so that
load on this shared machine hits both alike, and the ratio is taken per round.

Also reports the achieved multiply-accumulate rate (training ≈ 3 × forward MACs per image)
against the machine's measured fp32 matmul rate.

    python bench/throughput.py                  # resnet20 and vgg11, Fashion-MNIST
    python bench/throughput.py --images 2048 --rounds 3 --models resnet20
    python bench/throughput.py --section cifar10 [its options]   # see throughput_cifar10.py
Writes bench/results/throughput.{json,md}; the CIFAR-10 section (small genomes, the
engine's fast path against its plain path) writes throughput_cifar10*.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from archsearch.build import bind
from archsearch.data import ImageSet, Splits, load_data
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.train import TrainConfig, cpu_has_fast_bf16, seed_everything, train

RESULTS = Path(__file__).parent / "results"


class PILDataset(Dataset):
    """What torchvision's FashionMNIST does per item: a PIL image through transforms."""

    def __init__(self, data: ImageSet, transform):
        self.images, self.labels, self.transform = data.images, data.labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.images[i]
        pil = Image.fromarray(img[0].numpy(), mode="L") if img.shape[0] == 1 else \
            Image.fromarray(img.permute(1, 2, 0).numpy())
        return self.transform(pil), int(self.labels[i])


def reference_epoch(model: nn.Module, splits: Splits, data: ImageSet, batch_size: int,
                    workers: int) -> float:
    """One epoch of the paper's path over `data`; returns images/s (loader start included,
    as the paper's code starts a new iterator every epoch)."""
    from torchvision import transforms as T

    tf = T.Compose([T.RandomCrop(splits.info.size, padding=splits.pad),
                    T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(splits.mean, splits.std)])
    loader = DataLoader(PILDataset(data, tf), batch_size=batch_size, shuffle=True,
                        num_workers=workers, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    seen = 0
    start = time.perf_counter()
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def engine_epoch(model: nn.Module, splits: Splits, data: ImageSet, batch_size: int) -> float:
    tiny = ImageSet(splits.test.images[:64], splits.test.labels[:64], "eval")
    sub = Splits(splits.info, data, tiny, tiny, splits.mean, splits.std, splits.pad,
                 splits.flip)
    cfg = TrainConfig(schedule="scratch-e", epochs=1, batch_size=batch_size, lr=0.1,
                      fast=False)  # the engine as measured here; its fast path: cifar10
    result = train(model, sub, cfg, progress=False)
    return result.history[-1]["images_per_s"]


def bf16_probe(bound, batch_size: int, rounds: int = 4) -> dict[str, float]:
    """Train steps/s with bf16 autocast against fp32 on this CPU (interleaved): why the
    engine's `amp=auto` keeps fp32 on CPUs without native bf16."""
    seed_everything(0)
    model = bound.base_model().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, *bound.info.input_shape).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, bound.info.num_classes, (batch_size,))

    def rate(bf16: bool, steps: int = 3) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return batch_size * steps / (time.perf_counter() - start)

    rate(True, 1), rate(False, 1)
    got: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for bf16 in (False, True):
            got[bf16].append(rate(bf16))
    return {"fp32_images_per_s": statistics.median(got[False]),
            "bf16_images_per_s": statistics.median(got[True]),
            "bf16_over_fp32": statistics.median(got[True]) / statistics.median(got[False])}


def matmul_rate(n: int = 1024, reps: int = 10) -> float:
    """Measured fp32 multiply-accumulates per second of a square matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * n ** 3 / (time.perf_counter() - start)


def main() -> None:
    import sys

    if sys.argv[1:3] == ["--section", "cifar10"]:
        import throughput_cifar10  # beside this file: the script's folder is on sys.path

        throughput_cifar10.main(sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet20,vgg11")
    ap.add_argument("--images", type=int, default=3072, help="images per measured epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", default="0,2", help="DataLoader workers tried (reference)")
    ap.add_argument("--out", default=str(RESULTS / "throughput"))
    args = ap.parse_args()

    splits = load_data("fashion-mnist", val_fraction=0.0)
    data = splits.train.subset(args.images, seed=0)
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    for name in args.models.split(","):
        bound = bind(name, "fashion-mnist")
        fwd_macs = bound.base_cost.macs
        rates: dict[str, list[float]] = {"engine": []} | {f"ref_w{w}": [] for w in workers}
        engine_epoch(bound.base_model(), splits, data.subset(256), args.batch_size)  # warm-up
        for r in range(args.rounds):
            for key in rates:  # alternate within a round
                seed_everything(r)
                model = bound.base_model()
                if key == "engine":
                    rates[key].append(engine_epoch(model, splits, data, args.batch_size))
                else:
                    rates[key].append(reference_epoch(model, splits, data, args.batch_size,
                                                      int(key[5:])))
                print(f"{name} round {r + 1} {key}: {rates[key][-1]:.0f} img/s", flush=True)
        best_ref = max((k for k in rates if k != "engine"),
                       key=lambda k: statistics.median(rates[k]))
        ratios = [e / b for e, b in zip(rates["engine"], rates[best_ref], strict=True)]
        rows.append({
            "model": name, "forward_macs": fwd_macs,
            "images_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "samples": rates, "reference": best_ref,
            "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "engine_macs_per_s": statistics.median(rates["engine"]) * 3 * fwd_macs})
    probe = bf16_probe(bind(args.models.split(",")[0], "fashion-mnist"), args.batch_size)
    peak = statistics.median(matmul_rate() for _ in range(3))
    for row in rows:
        row["fraction_of_matmul"] = row["engine_macs_per_s"] / peak
    doc = {"machine": {"cpu": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "matmul_macs_per_s": peak,
                       "native_bf16": cpu_has_fast_bf16(), "bf16_probe": probe},
           "config": vars(args), "results": rows}
    atomic_write_json(Path(args.out + ".json"), doc)
    lines = ["# Training throughput: engine vs the paper's PIL + DataLoader path", "",
             f"Command: `python bench/throughput.py --models {args.models} --images "
             f"{args.images} --rounds {args.rounds} --batch-size {args.batch_size}`; "
             f"Fashion-MNIST, {torch.get_num_threads()} threads, torch {torch.__version__}. "
             "Rounds alternate between the pipelines; the speed-up is the per-round ratio to "
             "the faster reference (DataLoader workers "
             f"{args.workers}).", "",
             "| model | engine img/s | reference img/s (workers) | speed-up median "
             "[min, max] | engine MAC/s | of matmul peak |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        ref = row["images_per_s"][row["reference"]]
        lines.append(
            f"| {row['model']} | {row['images_per_s']['engine']:.0f} | {ref:.0f} "
            f"({row['reference'][5:]}) | {row['speedup_median']:.2f}× "
            f"[{row['speedup_min']:.2f}, {row['speedup_max']:.2f}] | "
            f"{row['engine_macs_per_s'] / 1e9:.1f} G | {row['fraction_of_matmul']:.0%} |")
    lines += ["", f"bf16 autocast on this CPU (native bf16: {cpu_has_fast_bf16()}): "
              f"{probe['bf16_images_per_s']:.0f} img/s against {probe['fp32_images_per_s']:.0f} "
              f"fp32 ({probe['bf16_over_fp32']:.2f}×, {args.models.split(',')[0]}, "
              "interleaved): the engine's `amp=auto` uses bf16 only where it is native."]
    lines += ["", f"Measured fp32 matmul rate (1024², median of 3): {peak / 1e9:.1f} GMAC/s. "
              "Training MACs per image are taken as 3 × forward (forward, input and weight "
              "gradients).", "", "All reference rates: " + json.dumps(
                  {r["model"]: {k: round(v) for k, v in r["images_per_s"].items()}
                   for r in rows})]
    atomic_write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
