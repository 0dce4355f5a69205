"""Search throughput: candidates per hour of today's 20-trial proxy search vs multi-fidelity.

    python bench/search_throughput.py [--space vgg11-half] [--budget 25%FLOPs] [--threads 1]
    python bench/search_throughput.py --smoke     # tiny sizes, writes under runs/ only

One invocation runs, one after the other (same machine, same load), in run folders under
`--runs`:
- `proxy-20`: `archsearch search --evaluator proxy --final 0`: 20 trials, each trained from
  scratch on the proxy schedule (2 epochs on 20% of the training split, Hyperband early
  stopping): the search before the multi-fidelity one, whose defaults these still are;
- `multi-fidelity`: `archsearch search` as shipped (the screen's evaluator, adaptive-bn by
  default, gets its one-off training first: a base trained in the run folder, or a
  supernet; `screen` candidates are scored from it, the best proxy-trained, the best of
  those trained longer).
Both in-process with the library calls of the command (one worker), so that the bench sets
the CPU threads. For each: the candidates per fidelity (counted trials; how many completed
or were stopped early), their seconds (each trial start to end, summed: read from the
study, so a resumed run adds up), the screen's one-off training seconds (spent inside the
first screen trial) and this invocation's wall time. Reported: candidates per hour of each
search and the ratio, with and without that one-off training; the screen's seconds per
candidate against the proxy's; and how many candidates the screen scores in the old
search's time. A finished run folder is read back, not rerun. Writes
bench/results/search_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from genome_quality import DATASET, log, machine, write_results

from archsearch.search import (
    Search,
    SearchConfig,
    evaluators_for,
    fidelity_costs,
    open_run,
    screen_setup_cost,
)

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 10.0  # issue 11: >= 10x more candidates in the same wall time
CONFIGS = {"proxy-20": {"evaluator": "proxy", "final": 0}, "multi-fidelity": {}}
# smoke: the same small proxy for both, tiny screen and final
SMOKE_PROXY = {"trials": 3, "proxy_epochs": 2, "proxy_subset": 128, "proxy_val": 128}
SMOKE_MULTI = {"screen": 8, "final": 1, "final_epochs": 1, "final_subset": 128,
               "base_epochs": 1, "base_subset": 256, "calib_images": 64, "screen_val": 128}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="vgg11-half")
    p.add_argument("--budget", default="25%FLOPs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/search_throughput", help="run folders (resumable)")
    p.add_argument("--out", default=str(RESULTS / "search_throughput"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a minute or two)")
    args = p.parse_args(argv)
    args.configs = {name: dict(c) for name, c in CONFIGS.items()}
    if args.smoke:  # never mixed with (or written over) the real results
        args.configs["proxy-20"].update(SMOKE_PROXY)
        args.configs["multi-fidelity"].update(SMOKE_PROXY | SMOKE_MULTI)
        args.runs = str(Path(args.runs).with_name(Path(args.runs).name + "-smoke"))
        if args.out == str(RESULTS / "search_throughput"):
            args.out = str(Path(args.runs) / "search_throughput")
    return args


def run_config(name: str, overrides: dict[str, Any], args: argparse.Namespace
               ) -> dict[str, Any]:
    run_dir = Path(args.runs) / f"{args.space}-{args.budget}" / name
    config = SearchConfig.from_flat(budget=args.budget, out=str(run_dir), space=args.space,
                                    dataset=DATASET, **overrides)
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in overrides.items())
    command = f"archsearch search --space {args.space} --budget {args.budget}{flags}"
    log(f"{name}: {command} --out {run_dir}")
    fresh = not (run_dir / "search.json").exists()
    start = time.perf_counter()
    ran = Search(config, evaluators_for(config), worker_index=0).work()
    wall = time.perf_counter() - start
    costs = fidelity_costs(open_run(run_dir).trials())
    setup = screen_setup_cost(run_dir) or {}
    log(f"{name}: {sum(c['candidates'] for c in costs.values())} candidates, "
        f"{sum(c['wall_s'] for c in costs.values()):.0f} s of trials")
    return {"command": command, "costs": costs, "total": config.total,
            "one_off": setup.get("kind"), "one_off_s": setup.get("train_s") or 0.0,
            "wall_s": wall if fresh and ran else None}


def throughput(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Candidates per hour of both searches, their ratios, and the screen against the proxy
    (times: summed trial seconds; the screen's one-off training is part of the screen's)."""
    def total(run: dict[str, Any], key: str) -> float:
        return sum(c[key] for c in run["costs"].values())

    t_old, t_new = total(old, "wall_s"), total(new, "wall_s")
    n_old, n_new = total(old, "candidates"), total(new, "candidates")
    once = new["one_off_s"]
    per_hour = {"old": 3600 * n_old / t_old, "new": 3600 * n_new / t_new,
                "new_without_one_off": 3600 * n_new / (t_new - once)}
    out = {"old_s": t_old, "new_s": t_new, "one_off_s": once, "old_candidates": n_old,
           "new_candidates": n_new, "per_hour": per_hour,
           "ratio": per_hour["new"] / per_hour["old"],
           "ratio_without_one_off": per_hour["new_without_one_off"] / per_hour["old"]}
    screen = new["costs"].get("screen")
    if screen:
        per_screen = (screen["wall_s"] - once) / screen["candidates"]
        per_proxy = t_old / n_old
        out |= {"screen_s_per_candidate": per_screen, "proxy_s_per_candidate": per_proxy,
                "screen_vs_proxy": per_proxy / per_screen,
                # the screen alone in the old search's time: with its one-off training in it,
                # and with that already done (cached in the run folder)
                "screened_in_old_time": max(0.0, t_old - once) / per_screen,
                "screened_in_old_time_without_one_off": t_old / per_screen}
    return out


def _costs_line(run: dict[str, Any]) -> str:
    parts = [f"{c['candidates']} {f} ({c['complete']} complete, {c['pruned']} stopped early, "
             f"{c['failed']} failed; {c['wall_s']:.0f} s)" for f, c in run["costs"].items()]
    wall = f"; invocation wall {run['wall_s']:.0f} s" if run["wall_s"] is not None else ""
    return ", ".join(parts) + wall


def markdown(doc: dict[str, Any]) -> str:
    t, runs, m = doc["throughput"], doc["runs"], doc["machine"]
    what = {"supernet": "the supernet", "base": "adaptive-bn's base"}.get(
        runs["multi-fidelity"].get("one_off"), "none")
    yes = lambda r: "**yes**" if r >= TARGET else "no"  # noqa: E731
    lines = [f"# Search throughput: candidates per hour ({doc['space']}, {doc['budget']}, "
             "Fashion-MNIST)", "",
             "Both searches ran in one invocation on the same machine; times are the trials' "
             "start-to-end seconds summed per fidelity (the multi-fidelity search does its "
             f"screen's one-off training, {what}, inside its first screen trial).", "",
             f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
             f"{m['torch']}.", ""]
    for name, run in runs.items():
        lines += [f"- **{name}** (`{run['command']}`): {_costs_line(run)}."]
    lines += ["", "| | candidates | seconds | candidates per hour |", "|---|---|---|---|",
              f"| proxy-20 | {t['old_candidates']} | {t['old_s']:.0f} | "
              f"{t['per_hour']['old']:.0f} |",
              f"| multi-fidelity, one-off training included | {t['new_candidates']} | "
              f"{t['new_s']:.0f} | {t['per_hour']['new']:.0f} |",
              f"| multi-fidelity, one-off training excluded | {t['new_candidates']} | "
              f"{t['new_s'] - t['one_off_s']:.0f} | {t['per_hour']['new_without_one_off']:.0f} "
              "|", "",
              f"Candidates per hour, multi-fidelity / proxy-20: **{t['ratio']:.1f}×** with the "
              f"screen's one-off training ({what}, {t['one_off_s']:.0f} s) included, "
              f"**{t['ratio_without_one_off']:.1f}×** without it. Target ≥ {TARGET:.0f}×: "
              f"{yes(t['ratio'])} (included), {yes(t['ratio_without_one_off'])} (excluded)."]
    if "screen_s_per_candidate" in t:
        lines += ["", f"Per candidate: screen {t['screen_s_per_candidate']:.2f} s (the "
                  f"one-off training excluded), proxy {t['proxy_s_per_candidate']:.1f} s "
                  f"({t['screen_vs_proxy']:.0f}× cheaper). In the {t['old_s']:.0f} s of the "
                  f"20-trial search the screen scores {t['screened_in_old_time']:.0f} "
                  f"candidates when it must do its one-off training first, "
                  f"{t['screened_in_old_time_without_one_off']:.0f} with that already "
                  "done."]
    lines += ["", f"Command: `{doc['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = {name: run_config(name, overrides, args) for name, overrides in args.configs.items()}
    doc = {"space": args.space, "budget": args.budget, "configs": args.configs, "runs": runs,
           "throughput": throughput(runs["proxy-20"], runs["multi-fidelity"]),
           "machine": machine(), "command": "python bench/search_throughput.py " + " ".join(
               argv if argv is not None else sys.argv[1:])}
    write_results(Path(args.out), doc, markdown)
    log(f"wrote {Path(args.out).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
