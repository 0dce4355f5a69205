"""A trained network as files that run without archsearch: ONNX (checked through onnxruntime),
a `torch.export` program (.pt2), or a state_dict + genome JSON pair that archsearch rebuilds.

Every file is written atomically (a temp file beside it, then a rename): a failed export
leaves what was there before untouched.
"""

from __future__ import annotations

import importlib
import io
import logging
from pathlib import Path

import torch
from torch import nn

from archsearch.errors import ArchsearchError
from archsearch.io import atomic_torch_save, atomic_write_bytes

log = logging.getLogger(__name__)

# format → (file suffix, the packages it needs beyond torch)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": (".onnx", ("onnx", "onnxscript", "onnxruntime")),
    "pt2": (".pt2", ()),
    "state-dict": (".pt", ()),
}
INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_BATCH = 65536  # the exported batch dimension is dynamic in 1..MAX_BATCH
EXAMPLE_BATCH = 2  # torch.export specializes a dimension traced at size 1


def check_format(fmt: str) -> None:
    """A known format whose packages import; one line naming the value or the package."""
    if fmt not in FORMATS:
        raise ArchsearchError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    missing = [name for name in FORMATS[fmt][1] if not _importable(name)]
    if missing:
        raise ArchsearchError(f"--format {fmt} needs the package(s) {', '.join(missing)}, "
                              "which are not installed: pip install 'archsearch[onnx]'")


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def output_paths(out: Path, fmt: str) -> list[Path]:
    """The files an export to `out` writes (state-dict: the weights, then the genome JSON
    beside them, `NAME.genome.json`)."""
    if fmt == "state-dict":
        return [out, out.with_name(out.stem + ".genome.json")]
    return [out]


def exported_program(model: nn.Module, input_shape: tuple[int, ...]
                     ) -> torch.export.ExportedProgram:
    """`model` (eval mode) as a torch.export program whose batch dimension is dynamic."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = torch.zeros(EXAMPLE_BATCH, *input_shape)
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))


def onnx_bytes(program: torch.export.ExportedProgram) -> bytes:
    """The ONNX model of an exported program, weights inline, input `images`, output
    `logits` (dynamic batch)."""
    onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, optimize=True,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    assert onnx_program is not None
    return onnx_program.model_proto.SerializeToString()


def pt2_bytes(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def export_model(model: nn.Module, input_shape: tuple[int, ...], fmt: str, out: Path,
                 genome_doc: dict | None = None) -> list[Path]:
    """Write `model` to `out` in `fmt` (see FORMATS); returns the paths written. state-dict
    also writes `genome_doc` (the genome's JSON) beside the weights."""
    check_format(fmt)
    paths = output_paths(out, fmt)
    if fmt == "state-dict":
        if genome_doc is None:
            raise ArchsearchError("a state-dict export needs the genome to rebuild it from")
        from archsearch.io import atomic_write_json

        atomic_torch_save(paths[0], {k: v.detach().cpu().contiguous()
                                     for k, v in model.state_dict().items()})
        atomic_write_json(paths[1], genome_doc)
        return paths
    program = exported_program(model, input_shape)
    data = onnx_bytes(program) if fmt == "onnx" else pt2_bytes(program)
    atomic_write_bytes(paths[0], data)
    log.info("exported %s (%d bytes)", paths[0], len(data))
    return paths


def run_onnx(path_or_bytes: str | Path | bytes, images: torch.Tensor,
             threads: int | None = None) -> torch.Tensor:
    """The outputs of an ONNX model on `images`, through onnxruntime on the CPU."""
    session = onnx_session(path_or_bytes, threads)
    out = session.run([OUTPUT_NAME], {INPUT_NAME: images.float().contiguous().numpy()})[0]
    return torch.from_numpy(out)


def onnx_session(path_or_bytes: str | Path | bytes, threads: int | None = None):  # noqa: ANN201
    """An onnxruntime CPU session (`threads` intra-op threads, one inter-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def max_abs_diff(fmt: str, paths: list[Path], model: nn.Module, images: torch.Tensor) -> float:
    """How far the exported files' outputs on `images` are from `model`'s (fp32)."""
    with torch.no_grad():
        want = model.eval()(images)
        if fmt == "onnx":
            got = run_onnx(paths[0], images)
        elif fmt == "pt2":
            got = torch.export.load(str(paths[0])).module()(images)
        else:
            from archsearch.deploy._run import rebuild

            got = rebuild(paths[0], paths[1])(images)
    return float((got - want).abs().max())
