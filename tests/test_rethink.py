"""`rethink`: every leg trains for real on a tiny space; finished legs are never re-run; a
killed leg resumes from its own checkpoint; the table is the mean ± std of the legs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archsearch.train as trainer
from archsearch.discover import RethinkConfig, plan
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.rethink import Rethink, markdown, summarize
from tests.conftest import TINY_RESNET, write_space


@pytest.fixture
def tiny_space(tmp_path: Path) -> str:
    return write_space(tmp_path, "tiny", TINY_RESNET,
                       description="ResNet-14 at widths 4/8/8, for tests")


def _config(space: str, out: Path, method: str = "slimming", **kw) -> RethinkConfig:
    opts = {"epochs": 1, "subset": 96, "seeds": 1, "test_subset": 64, "batch_size": 32, **kw}
    return RethinkConfig(method, "50%FLOPs", space=space, out=str(out), **opts)


class _Spy:
    """Wraps the trainer's `train`: records each call; can stop one leg after its first
    epoch, the way a kill would (the checkpoint of that epoch is on disk)."""

    def __init__(self, real, interrupt: str | None = None):
        self.real, self.interrupt, self.calls = real, interrupt, []

    def __call__(self, model, splits, config, **kw):
        leg = Path(kw["run_dir"]).name
        self.calls.append((leg, kw.get("resume")))
        if leg == self.interrupt:
            self.interrupt = None

            def stop(record):
                raise KeyboardInterrupt

            kw["on_epoch"] = stop
        return self.real(model, splits, config, **kw)


def test_rethink_resume_never_reruns_finished_legs(tiny_space, tmp_path, monkeypatch):
    out = tmp_path / "run"
    spy = _Spy(trainer.train, interrupt="scratch-b")
    monkeypatch.setattr(trainer, "train", spy)
    with pytest.raises(KeyboardInterrupt):
        Rethink(plan(_config(tiny_space, out)), progress=False).run()
    legs = json.loads((out / "legs.json").read_text())["legs"]
    assert set(legs) == {"seed0/base", "seed0/finetune", "seed0/scratch-e"}
    killed = torch.load(out / "seed0" / "scratch-b" / "checkpoint.pt", weights_only=True)
    assert killed["epoch"] == 1 and killed["epochs"] == 2  # scratch-b: 2x the epochs at 50%
    stamps = {leg: (out / "seed0" / leg / "checkpoint.pt").stat().st_mtime_ns
              for leg in ("base", "finetune", "scratch-e")}

    spy.calls.clear()
    with pytest.raises(ArchsearchError, match="--resume"):  # without --resume: refused
        plan(_config(tiny_space, out))
    seen = []
    doc = Rethink(plan(_config(tiny_space, out, resume=True)), on_leg=seen.append,
                  progress=False).run()
    # only the killed leg and the one never started are trained
    assert spy.calls == [("scratch-b", True), ("uniform", True)]
    assert [(r["leg"], r["status"]) for r in seen if r["status"] == "done"] == [
        ("base", "done"), ("finetune", "done"), ("scratch-e", "done")]
    for leg, stamp in stamps.items():
        assert (out / "seed0" / leg / "checkpoint.pt").stat().st_mtime_ns == stamp
    resumed = torch.load(out / "seed0" / "scratch-b" / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 2
    assert resumed["history"][0] == killed["history"][0]  # epoch 1 was not trained again
    assert [r["leg"] for r in doc["rows"]] == ["base", "finetune", "scratch-e", "scratch-b",
                                               "uniform"]
    for leg in ("base", "finetune", "scratch-e"):
        assert doc["legs"][[r["leg"] for r in doc["legs"]].index(leg)] == legs[f"seed0/{leg}"]

    # a third run finds everything recorded and trains nothing
    spy.calls.clear()
    again = Rethink(plan(_config(tiny_space, out, resume=True)), progress=False).run()
    assert spy.calls == []
    assert again["rows"] == doc["rows"]
    assert (out / "rethink.md").read_text().startswith("# rethink: slimming at 50%FLOPs")


def test_rethink_outputs_and_changed_settings(tiny_space, tmp_path):
    out = tmp_path / "run"
    doc = Rethink(plan(_config(tiny_space, out, method="sss", seeds=2)), progress=False).run()
    bound = plan(_config(tiny_space, tmp_path / "other", method="sss")).bound
    rows = {r["leg"]: r for r in doc["rows"]}
    assert all(r["n"] == 2 for r in rows.values())
    assert rows["base"]["macs"] == bound.base_cost.macs
    half = bound.base_cost.macs / 2
    for leg in ("finetune", "scratch-e", "scratch-b", "uniform"):
        assert abs(rows[leg]["macs"] - half) <= 0.01 * half
    assert rows["scratch-b"]["epochs"] == 2 and rows["scratch-e"]["epochs"] == 1
    for seed in (0, 1):  # the pruned genome of each seed's base, removing blocks (sss)
        genome = Genome.load(out / f"seed{seed}" / "genome.json")
        bound.validate(genome)
        assert genome.provenance["seed"] == seed and genome.removed_blocks()
    for rec in doc["legs"]:
        assert 0 <= rec["test_acc"] <= 1 and rec["test_images"] == 64 and rec["wall_s"] > 0
    on_disk = json.loads((out / "rethink.json").read_text())
    assert on_disk["rows"] == doc["rows"]
    with pytest.raises(ArchsearchError, match="different settings"):
        Rethink(plan(_config(tiny_space, out, method="sss", seeds=2, epochs=2, resume=True)),
                progress=False).run()


def test_summary_is_mean_and_sample_std():
    recs = [{"leg": "scratch-b", "seed": s, "test_acc": a, "wall_s": w, "macs": 50.0,
             "params": 10.0, "macs_ratio": 0.5, "params_ratio": 0.4, "epochs": 4}
            for s, (a, w) in enumerate([(0.80, 10.0), (0.90, 20.0), (0.85, 30.0)])]
    (row,) = summarize(recs)
    assert row["n"] == 3 and row["test_acc"] == pytest.approx(0.85)
    assert row["test_acc_std"] == pytest.approx(0.05)
    assert row["wall_s_std"] == pytest.approx(10.0)
    (single,) = summarize(recs[:1])
    assert single["test_acc_std"] == 0.0
    text = markdown({"method": "slimming", "budget": "50%FLOPs", "space": "vgg11",
                     "dataset": "fashion-mnist", "seeds": [0, 1, 2], "wall_s": 60.0,
                     "config": {"epochs": 2, "subset": 1000, "finetune_epochs": 1,
                                "test_subset": None}, "rows": [row]})
    assert "| pruned, Scratch-B | 85.00 ± 5.00 |" in text


def test_rethink_cli_json_and_uniform_method(tiny_space, tmp_path, capsys):
    from archsearch.cli.main import main

    out = tmp_path / "cli"
    argv = ["rethink", "--method", "uniform", "--budget", "40%params", "--space", tiny_space,
            "--epochs", "1", "--subset", "64", "--seeds", "2", "--test-subset", "32",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    # uniform is its own baseline: no separate uniform leg
    assert [r["leg"] for r in doc["rows"]] == ["base", "finetune", "scratch-e", "scratch-b"]
    assert all(abs(r["params_ratio"] - 0.4) <= 0.004 for r in doc["rows"][1:])
    assert doc["seeds"] == [0, 1] and len(doc["legs"]) == 8
    assert (out / "rethink.md").exists() and json.loads((out / "rethink.json").read_text())
