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
