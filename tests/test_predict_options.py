"""PredictOptions: the one options object of predict / segment / Segmenter, and the older keyword form."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from lightmedseg.cli.predict import add_arguments, prediction_options
from lightmedseg.inference.options import PredictOptions, predict_options


def test_options_module_imports_without_torch() -> None:
    """The CLI builds --help from inference.options; importing it must not load torch."""
    code = "import sys, lightmedseg.inference.options; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keywords_replace_fields_and_unknown_names_are_refused() -> None:
    opts = predict_options(None, device="cpu", tta=False)
    assert opts == PredictOptions(device="cpu", tta=False)
    assert opts.with_keywords(overlap=0.25) == PredictOptions(device="cpu", tta=False, overlap=0.25)
    assert predict_options(opts) is opts  # nothing to replace: the same object
    with pytest.raises(TypeError, match="tat"):
        predict_options(None, tat=True)  # a typo is an error, as an unexpected keyword argument would be
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.device = "cuda"  # type: ignore[misc]


def test_cli_defaults_are_the_options_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-i", "in", "-o", "out", "-m", "acdc"])
    assert prediction_options(args) == PredictOptions()
    args = parser.parse_args(["-i", "in", "-o", "out", "-m", "acdc", "--no-tta", "--device", "cpu",
                              "--keep-largest", "--require-contact", "LV=Myo", "--no-ensemble", "--overlap", "0.25"])
    assert prediction_options(args) == PredictOptions(device="cpu", tta=False, keep_largest=True,
                                                      require_contact={"LV": ["Myo"]}, ensemble=False, overlap=0.25)


def test_segmenter_takes_the_object_or_the_older_keywords() -> None:
    from lightmedseg.inference.segment import Segmenter

    opts = PredictOptions(device="cpu", backend="torch", tta=False, keep_largest=["LV"])
    by_object = Segmenter("acdc", opts)
    by_keywords = Segmenter("acdc", "cpu", backend="torch", tta=False, keep_largest=["LV"])
    assert by_object.options == by_keywords.options == opts
    assert by_object.predictor.tta_mode == by_keywords.predictor.tta_mode
    assert by_object.keep_largest == by_keywords.keep_largest == [3]  # LV is label 3 of acdc
    with pytest.raises(TypeError, match="device twice"):
        Segmenter("acdc", "cpu", device="cpu")
