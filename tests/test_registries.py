"""Tests driven by the registries, as timm's run over `list_models()`: every registered space,
pruner, dataset and command is tested without editing a list here. Each runs the command
line in this process (`main([...])`, as the `archsearch` script does)."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path
from typing import Any

import pytest

from archsearch.cli.main import COMMANDS, main
from archsearch.data import DATASETS
from archsearch.errors import ArchsearchError
from archsearch.pruners import METHODS, PRUNERS, SPARSIFIERS, option_defaults
from archsearch.spaces import list_spaces

CLASSES = {**PRUNERS, **SPARSIFIERS}
NOT_OPTIONS = {"self", "bound", "sparsity"}  # sparsity: the preset's rule (--sparsity)


def _one_line_exit_2(code: int, err: str) -> str:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# -- spaces: a corrupted copy of every space file is refused in one line -------------------

def _toml(doc: dict[str, Any]) -> str:
    """A space document as TOML (top-level values, then one table per section)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    top = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "".join(f"{kk} = {value(vv)}\n" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n".join(tables)


def _first_int(values: list[Any]) -> int | None:
    return next((i for i, v in enumerate(values)
                 if isinstance(v, int) and not isinstance(v, bool)), None)


def _corruptions(doc: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Broken copies of a space document, made from what it holds: unknown sections and
    keys, and every [model], [search] and [dataset] value made invalid; each with the word
    its error line must name."""
    def changed(section: str | None, key: str, new: Any, named: str = "") -> tuple[
            dict[str, Any], str]:
        copy = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
        if section is None:
            copy[key] = new
        else:
            copy.setdefault(section, {})[key] = new
        return copy, named or key

    out = {"unknown section": changed(None, "bogus", {"x": 1}),
           "unknown [model] key": changed("model", "bogus", 1),
           "unknown [search] key": changed("search", "bogus", 1),
           "unknown [dataset] key": changed("dataset", "bogus", 1),
           "divisor 0": changed("search", "divisor", 0),
           "min_width -1": changed("search", "min_width", -1),
           "unknown dataset": changed("dataset", "default", "no-such-dataset", "no-such-dataset"),
           "size 0": changed("dataset", "size", 0)}
    for key, v in doc.get("model", {}).items():
        if isinstance(v, str):
            out[f"[model] {key} unknown"] = changed("model", key, f"no-such-{v}", f"no-such-{v}")
        elif isinstance(v, int) and not isinstance(v, bool):
            out[f"[model] {key} = 0"] = changed("model", key, 0)
            out[f"[model] {key} + 1"] = changed("model", key, v + 1)  # resnet depth = 21
        elif isinstance(v, list) and (i := _first_int(v)) is not None:
            bad = list(v)
            bad[i] = 0  # a width of zero channels
            out[f"[model] {key} with width 0"] = changed("model", key, bad)
    return out


SPACE_CASES = [(space.name, case, broken, named) for space in list_spaces()
               for doc in [tomllib.loads(Path(space.path).read_text(encoding="utf-8"))]
               for case, (broken, named) in _corruptions(doc).items()]


def test_every_space_is_in_the_cases():
    assert {case[0] for case in SPACE_CASES} == {s.name for s in list_spaces()}
    assert len(list_spaces()) >= 2


@pytest.mark.parametrize(("space", "case", "doc", "named"), SPACE_CASES,
                         ids=[f"{s}-{c}" for s, c, _, _ in SPACE_CASES])
def test_a_corrupted_space_file_is_refused_in_one_line(space, case, doc, named, tmp_path,
                                                       capsys):
    if case.endswith("+ 1") and not case.startswith("[model] depth"):
        pytest.skip("only a depth has a rule that one more breaks")
    path = tmp_path / f"{space}.toml"
    path.write_text(_toml(doc), encoding="utf-8")
    code = main(["show", str(path), "--json"])
    line = _one_line_exit_2(code, capsys.readouterr().err)
    assert line.startswith("archsearch: error:") and named in line


def test_an_intact_copy_of_every_space_file_is_shown(tmp_path, capsys):
    """The writer of the corrupted copies writes a good space as it was."""
    for space in list_spaces():
        doc = tomllib.loads(Path(space.path).read_text(encoding="utf-8"))
        path = tmp_path / f"{space.name}.toml"
        path.write_text(_toml(doc), encoding="utf-8")
        assert main(["show", str(path), "--json", "--input-size", "32"]) == 0, \
            capsys.readouterr().err
        assert '"space": "' + space.name in capsys.readouterr().out


# -- pruners: every declared option is a flag, checked, and each default is its own -------

@pytest.mark.parametrize("method", METHODS)
def test_a_pruner_declares_exactly_its_constructor_options(method):
    params = set(inspect.signature(CLASSES[method].__init__).parameters) - NOT_OPTIONS
    assert {o.name for o in CLASSES[method].OPTIONS} == params


@pytest.mark.parametrize("method", METHODS)
def test_discover_help_lists_every_option_of_a_method(method, capsys):
    assert main(["discover", "--method", method, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    defaults = option_defaults(CLASSES[method])
    for option in CLASSES[method].OPTIONS:
        assert option.cli_flag in out, option.name
        default = defaults[option.name]
        if default not in (None, ()):  # the pruner's default, as the help shows it
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"(default {shown})" in out or f"{method} {shown}" in out, option.name


OPTION_CASES = [(m, o) for m in METHODS for o in CLASSES[m].OPTIONS]


@pytest.mark.parametrize(("method", "option"), OPTION_CASES,
                         ids=[f"{m}-{o.name}" for m, o in OPTION_CASES])
def test_an_invalid_option_value_is_one_line_exit_2(method, option, tmp_path, capsys):
    code = main(["discover", "--method", method, "--budget", "50%FLOPs", "--space", "vgg11",
                 option.cli_flag, "bogus", "--out", str(tmp_path / "run")])
    line = _one_line_exit_2(code, capsys.readouterr().err)
    assert "bogus" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("method", "option"), OPTION_CASES,
                         ids=[f"{m}-{o.name}" for m, o in OPTION_CASES])
def test_an_option_of_another_method_is_refused(method, option, tmp_path, capsys):
    others = [m for m in METHODS if option.name not in {o.name for o in CLASSES[m].OPTIONS}]
    if not others:
        pytest.skip("every method takes it")
    default = option_defaults(CLASSES[method])[option.name]
    text = {None: "1", (): "guide.json"}.get(default, str(default))  # valid for the option
    code = main(["discover", "--method", others[0], "--budget", "50%FLOPs", "--space",
                 "vgg11", option.cli_flag, text, "--out", str(tmp_path / "run")])
    line = _one_line_exit_2(code, capsys.readouterr().err)
    assert f"{option.cli_flag} applies to" in line and method in line


@pytest.mark.parametrize(("method", "option"), OPTION_CASES,
                         ids=[f"{m}-{o.name}" for m, o in OPTION_CASES])
def test_a_default_given_as_text_builds_the_same_pruner(method, option):
    """The flag's parser reads each default's text back to the default."""
    from archsearch.build import bind

    default = option_defaults(CLASSES[method])[option.name]
    if default in (None, ()):
        pytest.skip("no default value to give")
    parsed = option.parse(str(default))
    assert parsed == default and type(parsed) is type(default)
    bound = bind("resnet20", "fashion-mnist")
    try:
        CLASSES[method](bound)
    except ArchsearchError:
        return  # the method needs other inputs (guided-sparsity: a guide)
    pruner = CLASSES[method](bound, **{option.name: parsed})
    assert pruner.options().get(option.name, default) == default


def test_auto_sparsity_of_sss_follows_its_gate_options():
    """A user's --gate-lr reaches the rule that sizes sss's λ to the schedule (a 5x larger
    step needs a 5x smaller λ for the same travel of a gate, when the anchor is too weak)."""
    from archsearch.pipeline import DiscoverConfig, resolve_sparsity

    def sized(**opts: float) -> float:
        cfg = DiscoverConfig("sss", "50%FLOPs", epochs=1, pruner_options=opts)
        return resolve_sparsity(cfg, "resnet_cifar", 256)

    assert sized(gate_lr=0.5) == pytest.approx(sized() / 5, rel=0.01)
    assert sized(gate_lr=0.1) == sized()


# -- datasets: every dataset with files says, when they are missing, what to install/pass --

FILE_DATASETS = [name for name, info in DATASETS.items() if info.files.reader != "generated"]


def test_the_datasets_with_files_are_found():
    assert "fashion-mnist" in FILE_DATASETS and "synthetic" not in FILE_DATASETS


@pytest.mark.parametrize("dataset", FILE_DATASETS)
def test_missing_dataset_files_are_one_line_naming_what_to_pass(dataset, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.delenv("ARCHSEARCH_DATA", raising=False)
    monkeypatch.setattr("archsearch.data._loaders.SYSTEM_ROOTS", {})
    (tmp_path / "empty").mkdir()
    code = main(["discover", "--method", "slimming", "--budget", "50%FLOPs", "--space",
                 "vgg11", "--dataset", dataset, "--input-size", "32", "--data-root",
                 str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    line = _one_line_exit_2(code, capsys.readouterr().err)
    assert "--data-root" in line and "never downloads" in line
    assert line.endswith(DATASETS[dataset].files.missing)


# -- commands: every sub-command has a help and refuses a flag it does not know ------------

NAMES = [module.rpartition(".cmd_")[2] for module in COMMANDS]


def test_every_command_module_is_registered():
    import archsearch.cli as cli

    found = {p.stem.removeprefix("cmd_") for p in Path(cli.__file__).parent.glob("cmd_*.py")}
    assert found == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_command_help_exits_0(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: archsearch {name}")
    summary = inspect.cleandoc(importlib.import_module(f"archsearch.cli.cmd_{name}").__doc__)
    assert " ".join(summary.split("\n\n", 1)[1].split())[:40] in " ".join(out.split())


@pytest.mark.parametrize("name", NAMES)
def test_command_bogus_flag_is_one_line_exit_2(name, capsys):
    line = _one_line_exit_2(main([name, "--no-such-flag"]), capsys.readouterr().err)
    assert line.startswith("archsearch") and ": error:" in line
