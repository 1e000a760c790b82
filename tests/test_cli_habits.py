"""One spelling for output (-o/--output) and quiet (-q/--quiet) on every command, old spellings kept;
``train --device`` in predict's vocabulary."""

from __future__ import annotations

import argparse

import pytest

from lightmedseg.cli import train as train_cli
from lightmedseg.cli import evaluate as evaluate_cli


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser


@pytest.mark.parametrize("spelling", [["-o", "run"], ["--output", "run"], ["--out", "run"]])
def test_train_output_spellings(spelling: list[str]) -> None:
    args = _parser(train_cli).parse_args(["--data", "ds", *spelling, "-q"])
    assert str(args.out) == "run" and args.no_progress


def test_evaluate_output_and_quiet_spellings() -> None:
    args = _parser(evaluate_cli).parse_args(["--pred", "p", "--ref", "r", "-o", "rep", "-q"])
    assert str(args.out) == "rep" and args.quiet


@pytest.mark.parametrize("name,value", [("auto", "auto"), ("cpu", "cpu"), ("gpu", "cuda"), ("cuda:1", "cuda:1")])
def test_train_device_names(name: str, value: str) -> None:
    assert train_cli.train_device(name) == value


@pytest.mark.parametrize("name", ["tpu", "cuda:x", ""])
def test_train_device_refuses_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="expected auto, cpu, cuda"):
        train_cli.train_device(name)


@pytest.mark.parametrize("argv,expected", [([], None), (["--keep-largest"], True), (["--keep-largest", "RV", "2"], ["RV", "2"]),
                                           (["--no-keep-largest"], False)])
def test_predict_keep_largest_spellings(argv: list[str], expected) -> None:
    from lightmedseg.cli import predict as predict_cli

    args = _parser(predict_cli).parse_args(["-i", "in", "-o", "out", "-m", "acdc", *argv])
    assert predict_cli._keep_largest(args.keep_largest) == expected


@pytest.mark.parametrize("argv,expected", [([], None), (["--tta"], True), (["--tta", "rot90"], "rot90"),
                                           (["--tta", "mirror"], "mirror"), (["--no-tta"], False)])
def test_predict_tta_spellings(argv: list[str], expected) -> None:
    from lightmedseg.cli import predict as predict_cli

    assert _parser(predict_cli).parse_args(["-i", "in", "-o", "out", "-m", "acdc", *argv]).tta == expected


@pytest.mark.parametrize("argv,expected", [([], None), (["--no-require-contact"], False),
                                           (["--require-contact", "LV=Myo", "RV=Myo,LV"], {"LV": ["Myo"], "RV": ["Myo", "LV"]})])
def test_predict_require_contact_spellings(argv: list[str], expected) -> None:
    from lightmedseg.cli import predict as predict_cli

    args = _parser(predict_cli).parse_args(["-i", "in", "-o", "out", "-m", "acdc", *argv])
    assert predict_cli._require_contact(args.require_contact) == expected
    with pytest.raises(ValueError, match="expected LABEL=ANCHOR"):
        predict_cli._require_contact(["LV"])


@pytest.mark.parametrize("module_name", ["score_checkpoints", "make_card", "finalize"])
def test_model_making_commands_share_the_quiet_and_device_options(module_name: str) -> None:
    import importlib

    module = importlib.import_module(f"lightmedseg.cli.{module_name}")
    args = _parser(module).parse_args(["run", "--data", "ds", "-q", "--device", "cpu", "--max-cases", "2"])
    assert args.quiet and args.device == "cpu" and args.max_cases == 2 and str(args.run) == "run"


def test_average_output_spellings() -> None:
    from lightmedseg.cli import average as average_cli

    for flag in ("-o", "--output"):
        args = _parser(average_cli).parse_args([flag, "avg.safetensors", "a.safetensors", "b.safetensors"])
        assert str(args.output) == "avg.safetensors" and args.models == ["a.safetensors", "b.safetensors"]


def test_train_finalize_option() -> None:
    assert _parser(train_cli).parse_args(["--data", "ds", "-o", "run", "--finalize"]).finalize
    assert not _parser(train_cli).parse_args(["--data", "ds", "-o", "run"]).finalize
