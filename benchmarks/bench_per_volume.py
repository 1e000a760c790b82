"""Seconds per volume of `lightmedseg predict`'s CPU path, before and after issue 25's inference graph, and per
number of test-time-augmentation views (issue 25, item 3).

Two OpenVINO graphs of the same model, in ONE process, interleaved per volume (load from elsewhere hits both):
``reference`` (the plain module converted, the route before issue 25) and ``engine`` (the fast forward in engine
form, :class:`lightmedseg.fast.InferenceGraph`, what predict converts now). Each runs the whole Segmenter path
(read, preprocess, sliding window, TTA, restore, post-processing):

* ACDC: the shipped ``acdc`` model on the first ``--acdc-cases`` validation volumes of ``IMAGES``, with the card's
  post-processing and 1, 2, 4 and 8 in-plane views (none, rot180, the four rotations, the card's rot90 set);
* BraTS size: a seeded, untrained 4-channel ``brats``-preset model on a random 240 x 240 x 155 volume, one pass
  (the brats preset predicts without TTA).

    .venv/bin/python benchmarks/bench_per_volume.py IMAGES      # IMAGES: a folder of ACDC {case}_0000.nii.gz

``--models OLD NEW`` compares two model folders instead (each a model file with its card, e.g. the shipped ``acdc``
before and after it changed; issue 25): each through ``lightmedseg predict``'s whole default path (the backend
``load_backend`` picks, the card's TTA and post-processing), in one process, interleaved per volume; and the
BraTS-size volume through the default path for the ``brats`` network in each reading of Section 3.6
(``model.final_transposed_conv`` false / true), untrained, one pass.

    .venv/bin/python benchmarks/bench_per_volume.py IMAGES --models OLD_DIR acdc
"""

from __future__ import annotations

import argparse
import os
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from lightmedseg.hardware import cpu_name  # noqa: E402

VIEW_SETS = {1: [0], 2: [0, 4], 4: [0, 2, 4, 6], 8: list(range(8))}  # indices into tta.views("rot90"): 2k = k quarter turns


def engine_forwards(model: torch.nn.Module, config: dict, threads: int) -> dict:
    """name -> OpenVINO forward_fn of ``model``: the reference module's graph and the engine form's."""
    import openvino as ov

    from lightmedseg.inference import openvino_convert
    from lightmedseg.inference.conversion import OPENVINO_GRAPH_ENV
    from lightmedseg.inference.openvino_backend import StaticShapeForward, compile_properties, resolve_ov_precision

    props = compile_properties(resolve_ov_precision("auto"), threads)
    out = {}
    before = os.environ.get(OPENVINO_GRAPH_ENV)
    try:
        for name, form in (("reference", "reference"), ("engine", "fast")):
            os.environ[OPENVINO_GRAPH_ENV] = form
            ov_model, _ = openvino_convert.convert_module(model, config)
            out[name] = StaticShapeForward(ov.Core(), ov_model, props, Path(name))
    finally:
        os.environ.pop(OPENVINO_GRAPH_ENV, None) if before is None else os.environ.update({OPENVINO_GRAPH_ENV: before})
    return out


def time_acdc(images: Path, n_cases: int, threads: int) -> dict:
    from lightmedseg.checkpoint import load_model
    from lightmedseg.inference import tta as T
    from lightmedseg.inference.segment import Segmenter

    seg = Segmenter("acdc", "cpu", tta="rot90")
    model, config = load_model("acdc")
    fns = engine_forwards(model, config, threads)
    rot = T.views("rot90")
    original_views = T.views
    cases = sorted(images.glob("*_0000.nii.gz"))[:n_cases]
    times: dict[tuple[str, int], list[float]] = {}
    for case in cases:
        for n_views, idx in VIEW_SETS.items():
            T.views = lambda mode, idx=idx: [rot[i] for i in idx] if mode == "rot90" else original_views(mode)
            for name, fn in fns.items():
                seg.predictor.forward_fn = fn
                fn(torch.zeros(1, 1, *seg.predictor.roi_size))  # compile outside the timing
                t0 = time.perf_counter()
                seg(str(case))
                times.setdefault((name, n_views), []).append(time.perf_counter() - t0)
    T.views = original_views
    return {k: statistics.median(v) for k, v in times.items()}


def brats_size_case():
    """A seeded random 240 x 240 x 155 x 4 volume, the size of a BraTS case."""
    import nibabel as nib

    volume = np.random.default_rng(0).standard_normal((240, 240, 155, 4)).astype(np.float32)
    return nib.Nifti1Image(volume, np.eye(4))


def brats_model_dir(overrides: tuple[str, ...] = ()) -> tuple[Path, torch.nn.Module, dict]:
    """A run folder holding a seeded, untrained ``brats``-preset model (with ``overrides``), the model, its config."""
    from lightmedseg.checkpoint import save_model
    from lightmedseg.config import load_config
    from lightmedseg.model.factory import build_model

    torch.manual_seed(0)
    config = load_config("brats", overrides=list(overrides))
    model = build_model(config).eval()
    run = Path(tempfile.mkdtemp(prefix="bench-per-volume-")) / "run"
    save_model(run / "model_best.safetensors", model, config)
    return run, model, config


def interleaved_medians(segmenters: dict, inputs: list) -> dict[str, float]:
    """name -> median s of ``segmenter(x)`` over ``inputs``; all segmenters on one input before the next, so load
    from elsewhere hits them alike. The first input is run once untimed first (conversion and compilation)."""
    for seg in segmenters.values():
        seg(inputs[0])
    times: dict[str, list[float]] = {}
    for x in inputs:
        for name, seg in segmenters.items():
            t0 = time.perf_counter()
            seg(x)
            times.setdefault(name, []).append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def time_brats(threads: int, repeats: int) -> dict:
    from lightmedseg.inference.segment import Segmenter

    run, model, config = brats_model_dir()
    image = brats_size_case()
    seg = Segmenter(str(run), "cpu", tta=False)
    fns = engine_forwards(model, config, threads)
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seg.predictor.forward_fn = fn
            t0 = time.perf_counter()
            seg(image)
            times.setdefault(name, []).append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def time_models(images: Path, models: list[str], n_cases: int) -> dict:
    """model -> median s per ACDC volume through the whole default predict path (its card's TTA)."""
    from lightmedseg.inference.segment import Segmenter

    cases = [str(c) for c in sorted(images.glob("*_0000.nii.gz"))[:n_cases]]
    return interleaved_medians({m: Segmenter(m, "cpu") for m in models}, cases)


def time_brats_readings(repeats: int) -> dict:
    """reading -> median s for a 240 x 240 x 155 x 4 volume through the default predict path, one pass."""
    from lightmedseg.inference.segment import Segmenter

    segmenters = {}
    for final in (False, True):
        run, _, _ = brats_model_dir((f"model.final_transposed_conv={str(final).lower()}",))
        segmenters["final_transposed_conv" if final else "default reading"] = Segmenter(str(run), "cpu", tta=False)
    return interleaved_medians(segmenters, [brats_size_case()] * repeats)


def compare(args: argparse.Namespace) -> None:
    acdc = time_models(args.images, args.models, args.acdc_cases)
    print(f"\nACDC, the whole default predict path (each card's TTA and post-processing), median s per volume over "
          f"{args.acdc_cases} validation volumes:\n")
    print("| model | s / volume |\n|---|---:|")
    for name, t in acdc.items():
        print(f"| {name} | {t:.2f} |")
    brats = time_brats_readings(args.brats_repeats)
    print(f"\nBraTS size (240 x 240 x 155, 4 channels, untrained brats network, default predict path, one pass), "
          f"median of {args.brats_repeats}: " + ", ".join(f"{k} {v:.1f} s" for k, v in brats.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="folder of ACDC validation volumes ({case}_0000.nii.gz)")
    ap.add_argument("--acdc-cases", type=int, default=4)
    ap.add_argument("--brats-repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs=2, metavar=("OLD", "NEW"),
                    help="compare two model folders (model file + card) through the default predict path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{dt.date.today().isoformat()}, {cpu_name()}, {args.threads} threads")
    if args.models:
        compare(args)
        return 0
    acdc = time_acdc(args.images, args.acdc_cases, args.threads)
    print(f"\nACDC, shipped acdc, median s per volume over {args.acdc_cases} validation volumes:\n")
    print("| views per window | reference graph (before) | engine graph (now) |\n|---:|---:|---:|")
    for n in VIEW_SETS:
        print(f"| {n} | {acdc[('reference', n)]:.2f} | {acdc[('engine', n)]:.2f} |")
    brats = time_brats(args.threads, args.brats_repeats)
    print(f"\nBraTS size (240 x 240 x 155, 4 channels, brats preset, one pass), median of {args.brats_repeats}: "
          f"reference graph {brats['reference']:.1f} s, engine graph {brats['engine']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
