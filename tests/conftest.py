"""Test-wide settings: one intra-op thread (here and in spawned CLI processes).

The models in the tests are tiny: a parallel region per small op costs more than it saves,
and on a loaded 2-core machine OpenMP barriers stall for whole scheduler slices.
Set ARCHSEARCH_TEST_THREADS to change it.
"""

from __future__ import annotations

import os

import torch

THREADS = int(os.environ.get("ARCHSEARCH_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)


import pytest  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
needs_shared_cifar = pytest.mark.skipif(
    not (SHARED_CIFAR / "train").is_dir(),
    reason=f"the shared CIFAR-10 JPEG copy is not at {SHARED_CIFAR} (CI has it)")


@pytest.fixture(scope="module")
def synth(request):
    """Synthetic splits for a module's training tests: `SYNTH_SIZE` images (the module's
    constant, default 384), a quarter of them for validation."""
    from archsearch.data import load_data

    return load_data("synthetic", size=getattr(request.module, "SYNTH_SIZE", 384),
                     val_fraction=0.25)


@pytest.fixture(scope="module")
def bound(request):
    """The module's `SPACE` (default vgg11) bound to the synthetic dataset."""
    from archsearch.build import bind

    return bind(getattr(request.module, "SPACE", "vgg11"), "synthetic")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Decoded datasets and other caches go to a folder of this test session's."""
    previous = os.environ.get("ARCHSEARCH_CACHE")
    os.environ["ARCHSEARCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("ARCHSEARCH_CACHE", None)
    else:
        os.environ["ARCHSEARCH_CACHE"] = previous


TINY_RESNET = 'family = "resnet_cifar"\ndepth = 14\nwidths = [4, 8, 8]'  # a ResNet-14 at 4/8/8


def write_space(folder, name, model, divisor=1, min_width=1, description=None):
    """Write the space file `folder/name.toml` for a tiny `[model]` (its TOML lines, e.g.
    'family = "resnet_cifar"\ndepth = 8'), searched down to `min_width` in steps of
    `divisor`, on the synthetic dataset by default; its path as a string."""
    from pathlib import Path

    path = Path(folder) / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"description = {description!r}\n".replace("'", '"') if description else ""
    path.write_text(f"{head}[model]\n{model.strip()}\n[search]\ndivisor = {divisor}\n"
                    f"min_width = {min_width}\n[dataset]\ndefault = \"synthetic\"\n")
    return str(path)


def make_image_folder(root, classes=("a", "b"), per_class=4, size=(20, 16),
                      modes=("RGB", "L", "RGBA"), start=0):
    """An image folder `root/{train,test}/<class>/img N.png`: `per_class` training and
    per_class // 3 (at least 1) test images a class, modes cycling through `modes`, every
    fourth image 24×24 (the rest `size`, width × height), pixels seeded per class."""
    import numpy as np
    from PIL import Image

    for label, name in enumerate(classes):
        for split, count in (("train", per_class), ("test", max(1, per_class // 3))):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(label * 1000 + start + (split == "test"))
            for i in range(start, start + count):
                w, h = (24, 24) if i % 4 == 3 else size
                mode = modes[i % len(modes)]
                depth = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
                pixels = rng.integers(0, 256, (h, w, depth), dtype=np.uint8)
                pixels[..., : min(depth, 3)] //= 2
                pixels[..., min(label, depth - 1)] += 100
                img = Image.fromarray(pixels[..., 0] if depth == 1 else pixels, mode)
                img.save(folder / f"img {i}.png")
    return root


# `archsearch ARGS…` whose run stalls right after writing its first checkpoint: the point a
# kill test kills it at (deterministic, whatever the machine's speed)
STALL_AFTER_FIRST_CHECKPOINT = """
import pathlib, sys, time
from archsearch.train import _run
marker = pathlib.Path(sys.argv[1])
sys.argv = ["archsearch", *sys.argv[2:]]
save = _run.RunFolder.save
def stalling(self, *args, **kwargs):
    save(self, *args, **kwargs)
    marker.write_text("saved")
    time.sleep(3600)
_run.RunFolder.save = stalling
from archsearch.cli.main import main
raise SystemExit(main())
"""


def kill_after_first_checkpoint(argv, marker, env=None):
    """Run `archsearch *argv` until its first checkpoint is written, then SIGKILL it."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", STALL_AFTER_FIRST_CHECKPOINT, str(marker),
                             *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never wrote its first checkpoint"
    proc.send_signal(signal.SIGKILL)  # at the injected point: after checkpoint 1
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def assert_resumed_equals_uninterrupted(ref_stdout, resumed_stdout, ref_dir, out, epochs):
    """The resumed run's result and weights equal the uninterrupted run's, bit for bit."""
    import json

    from archsearch.train import load_checkpoint

    a, b = json.loads(ref_stdout), json.loads(resumed_stdout)
    assert b["test_acc"] == a["test_acc"] and b["epochs"] == epochs
    sa = load_checkpoint(ref_dir / "checkpoint.pt")["state_dict"]
    sb = load_checkpoint(out / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
