"""Deployment: a trained genome as files that run without archsearch (ONNX, a torch.export
program, or a state_dict + genome pair), and its measured latency against the base.

    run = open_train_run("runs/train-…")            # checkpoint.pt + genome.json
    export_model(run.model(), run.input_shape, "onnx", Path("model.onnx"))
    rows = compare_speed(run.model(), run.base_model(), run.input_shape, threads=1)
"""

from __future__ import annotations

from archsearch.deploy._export import (
    FORMATS,
    INPUT_NAME,
    OUTPUT_NAME,
    check_format,
    export_model,
    exported_program,
    max_abs_diff,
    onnx_bytes,
    output_paths,
    run_onnx,
)
from archsearch.deploy._latency import (
    RUNTIMES,
    Latency,
    SpeedRow,
    compare_speed,
    onnx_available,
    onnx_latency,
    time_calls,
    time_interleaved,
    time_models,
    torch_latency,
    torch_threads,
)
from archsearch.deploy._run import TrainedRun, is_train_run, open_train_run, rebuild

__all__ = ["FORMATS", "INPUT_NAME", "OUTPUT_NAME", "RUNTIMES", "Latency", "SpeedRow",
           "TrainedRun", "check_format", "compare_speed", "export_model", "exported_program",
           "is_train_run", "max_abs_diff", "onnx_available", "onnx_bytes", "onnx_latency",
           "open_train_run", "output_paths", "rebuild", "run_onnx", "time_calls",
           "time_interleaved", "time_models", "torch_latency", "torch_threads"]
