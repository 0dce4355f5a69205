"""Property-based fuzzing of every input a user hands archsearch (issue 14).

Genome JSON, budgets, numeric flags, space TOML and IDX headers are generated at random.
The property: the CLI exits 0, or exits 2 with exactly one line on stderr (never a
traceback, never exit 1); and when it refuses, it has created no file. The CLI runs
in-process (`main()`), so the whole file takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.data import load_data
from archsearch.errors import ArchsearchError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
BASE_GENOME = bind("vgg11", "fashion-mnist").uniform(parse_budget("5%FLOPs")).to_dict()


@pytest.fixture(autouse=True)
def no_dataset_files(monkeypatch):
    """No dataset is found: a command that gets past its checks stops at loading data
    (exit 2) instead of training, so every run below is fast."""
    monkeypatch.delenv("ARCHSEARCH_DATA", raising=False)
    monkeypatch.setattr("archsearch.data._loaders.SYSTEM_ROOTS", {})


def run_cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert err.count("\n") == 1 and err.endswith("\n") and err.strip(), err


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- strategies ----------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
GENOME_FIELDS = ["format", "version", "space", "dataset", "widths", "blocks", "provenance",
                 "cost", "extra"]


@st.composite
def genome_texts(draw) -> str:
    kind = draw(st.sampled_from(["mutate", "widths", "whole", "text", "nested"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "nested":
        depth = draw(st.integers(1, 100_000))
        return draw(st.sampled_from(["[", '{"a":'])) * depth
    if kind == "whole":
        return json.dumps(draw(json_values))
    doc = json.loads(json.dumps(BASE_GENOME))
    if kind == "widths":
        group = draw(st.sampled_from(sorted(doc["widths"]) + ["nosuch"]))
        doc["widths"][group] = draw(st.one_of(st.integers(-5, 10**6), json_values))
    else:
        for name in draw(st.lists(st.sampled_from(GENOME_FIELDS), min_size=1, max_size=3)):
            if draw(st.booleans()):
                doc.pop(name, None)
            else:
                doc[name] = draw(json_values)
    return json.dumps(doc)


numbers = st.one_of(st.integers(-2**80, 2**80), st.floats(allow_nan=True, allow_infinity=True))
number_texts = st.one_of(numbers.map(str), st.sampled_from(
    ["nan", "-nan", "inf", "-inf", "1e20", "1e-400", "0x10", "", " 3", "1_000", "٣"]),
    st.text(max_size=8))


@st.composite
def budgets(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=16))
    number = draw(number_texts)
    unit = draw(st.sampled_from(["%", "", "K", "M", "G", "T", "k", "x"]))
    metric = draw(st.sampled_from(["FLOPs", "MACs", "params", "flops", "bytes", ""]))
    return f"{number}{unit}{metric}"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else
                                                "-inf" if value == -math.inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=True)


toml_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                         st.floats(allow_nan=True, allow_infinity=True),
                         st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8))
toml_values = st.one_of(toml_scalars, st.lists(toml_scalars, max_size=4))
small_widths = st.lists(st.one_of(st.integers(-3, 40), st.just("M"), toml_scalars), max_size=5)


@st.composite
def space_tomls(draw) -> str:
    family = draw(st.sampled_from(["vgg", "resnet_cifar", "preresnet", "torchvision",
                                   "nofamily"]))
    model = {"family": draw(st.one_of(st.just(family), toml_scalars))}
    if family == "vgg":
        model["cfg"] = draw(st.one_of(small_widths, toml_values))
    elif family in ("resnet_cifar", "preresnet"):
        model["depth"] = draw(st.one_of(st.integers(-4, 60), toml_values))
        if draw(st.booleans()):
            model["widths"] = draw(st.one_of(st.lists(st.integers(-2, 24), max_size=4),
                                             toml_values))
    elif family == "torchvision":
        model["name"] = draw(st.one_of(st.sampled_from(["resnet18", "nonet"]), toml_values))
    if draw(st.booleans()):
        model[draw(st.sampled_from(["extra", "depth", "cfg"]))] = draw(toml_values)
    lines = ["[model]"] + [f"{k} = {toml_value(v)}" for k, v in model.items()]
    search = {k: draw(st.one_of(st.integers(-2, 9), toml_values))
              for k in draw(st.lists(st.sampled_from(["divisor", "min_width", "other"]),
                                     max_size=2, unique=True))}
    lines += ["[search]"] + [f"{k} = {toml_value(v)}" for k, v in search.items()]
    if draw(st.booleans()):
        default = draw(st.one_of(st.sampled_from(["cifar10", "fashion-mnist", "mnist-xl"]),
                                 toml_scalars))
        lines += ["[dataset]", f"default = {toml_value(default)}"]
    if draw(st.booleans()):
        lines.insert(0, f"description = {toml_value(draw(toml_values))}")
    if draw(st.integers(0, 9)) == 0:
        lines = [f"model = {toml_value(draw(toml_values))}"]
    return "\n".join(lines) + "\n"


# -- properties ----------------------------------------------------------------------------

@FUZZ
@given(text=genome_texts())
def test_fuzz_genome_files(text):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "genome.json"
        path.write_text(text)
        assert_clean(*run_cli("show", str(path), "--json"))
        code, err = run_cli("train", str(path), "--out", str(folder / "run"), "--epochs", "1")
        assert code == 2 and err.count("\n") == 1, err  # bad genome, or no data: refused
        assert files_under(folder) == {"genome.json"}


@FUZZ
@given(budget=budgets())
def test_fuzz_budgets(budget):
    code, err = run_cli("show", "vgg11", "--budget", budget, "--json")
    assert_clean(code, err)
    if code == 0:
        assert 0 < parse_budget(budget).value


TRAIN_FLAGS = ["--subset", "--seed", "--batch-size", "--epochs", "--lr", "--max-scale"]
SEARCH_FLAGS = ["--trials", "--proxy-epochs", "--proxy-subset", "--proxy-val", "--batch-size",
                "--workers", "--seed"]


@FUZZ
@given(flag=st.sampled_from(TRAIN_FLAGS), value=number_texts,
       schedule=st.sampled_from(["scratch-e", "scratch-b"]))
def test_fuzz_train_numbers(flag, value, schedule):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        genome = folder / "g.json"
        genome.write_text(json.dumps(BASE_GENOME))
        code, err = run_cli("train", str(genome), "--schedule", schedule, "--out",
                            str(folder / "run"), flag, value)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert files_under(folder) == {"g.json"}


@FUZZ
@given(flag=st.sampled_from(SEARCH_FLAGS), value=number_texts)
def test_fuzz_search_numbers(flag, value):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        code, err = run_cli("search", "--budget", "20%FLOPs", "--space", "vgg11", "--out",
                            str(folder / "run"), flag, value)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert files_under(folder) == set()


@FUZZ
@given(text=space_tomls())
def test_fuzz_space_files(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.toml"
        path.write_text(text)
        assert_clean(*run_cli("show", str(path), "--json"))
        assert files_under(Path(tmp)) == {"fuzzed.toml"}


def _idx(kind: int, dims: list[int], body: bytes) -> bytes:
    return bytes([0, 0, kind, len(dims)]) + b"".join(
        (d % 2**32).to_bytes(4, "big") for d in dims) + body


@FUZZ
@given(which=st.sampled_from(["images", "labels"]),
       kind=st.sampled_from([0x08, 0x08, 0x08, 0x09, 0x0D, 0x00]),
       dims=st.lists(st.one_of(st.integers(0, 40), st.sampled_from([28, 2**31, 2**32 - 1])),
                     max_size=5),
       extra=st.integers(-3, 3), label_max=st.integers(0, 255), truncate_header=st.booleans())
def test_fuzz_idx_headers(which, kind, dims, extra, label_max, truncate_header):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        good = {"images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
                "labels": np.array([0, 1, 2, 3], np.uint8)}
        size = int(np.prod(dims, dtype=object)) if dims else 1
        body_len = max(0, min(size, 10**6) + extra)
        body = bytes(rng.integers(0, label_max + 1, body_len, dtype=np.uint8))
        fuzzed = _idx(kind, dims, body)
        if truncate_header:
            fuzzed = fuzzed[: 4 + 2 * len(dims)]
        for split in ("train", "t10k"):
            for name, arr in good.items():
                path = root / f"{split}-{name}-idx{3 if name == 'images' else 1}-ubyte"
                data = fuzzed if (name == which and split == "train") else _idx(
                    8, list(arr.shape), arr.tobytes())
                path.write_bytes(data)
        try:
            splits = load_data("fashion-mnist", root=root, val_fraction=0.0)
        except ArchsearchError as exc:
            assert "\n" not in str(exc) and str(exc)
            return
        n = len(splits.train)
        assert splits.train.images.shape == (n, 1, 28, 28) and n >= 1
        assert int(splits.train.labels.max()) < 10 and int(splits.train.labels.min()) >= 0
