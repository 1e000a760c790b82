"""File-level prediction: find cases, decide output paths safely, predict, write label maps in native geometry.

Every case goes through :class:`lightmedseg.inference.segment.Segmenter`, the same path as
:func:`lightmedseg.segment`. Outputs are NIfTI (or the input's format with ``output_format="input"``, or
the format an OUTPUT file name says); ``labels.json`` and a 3D Slicer colour table name the labels.

Safety rules: outputs are never written inside the input folder; existing outputs are skipped (folder
output) or refused (file output) unless ``overwrite``; every file is written atomically, and all cases are
checked (channel files present, count matches the model) before the first one is predicted.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from lightmedseg.data.io import ImageGeometry
from lightmedseg.data.readers import image_ending, read_channels
from lightmedseg.inference.inputs import CaseInput, InputError, find_cases
from lightmedseg.inference.predictor import ForwardFn, describe
from lightmedseg.inference.segment import Segmenter, output_ending, write_label_sidecars, write_prediction
from lightmedseg.io_utils import atomic_path, is_inside

NIFTI_ENDINGS = (".nii.gz", ".nii")
PROBABILITY_FOLDER = "probabilities"


@dataclass
class PredictReport:
    """What a prediction run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)  # labels.json and the Slicer colour table


def read_case(case: CaseInput) -> tuple[np.ndarray, ImageGeometry]:
    """Image (C, Z, Y, X) float32 and its geometry, from one 4D file or one 3D file per channel (any format)."""
    return read_channels(case.files)


def plan_outputs(
    cases: list[CaseInput], output: str | os.PathLike, input_dir: Path, output_format: str = "nifti"
) -> tuple[dict[str, Path], Path | None]:
    """Output label file per case, and the probability folder base; refuses paths inside the input folder.

    An OUTPUT file name's ending picks its format; in a folder, ``output_format`` does (``nifti``/``input``).
    """
    out = Path(output)
    as_file = image_ending(out.name) is not None
    if as_file and len(cases) != 1:
        raise InputError(f"{out}: a file name as OUTPUT needs a single case, but INPUT holds {len(cases)}; give a folder")
    if as_file and out.is_dir():
        raise InputError(f"{out}: is a folder, but its name ends like an image file; pick another name")
    if not as_file and out.is_file():
        raise InputError(f"{out}: exists and is a file; OUTPUT for several cases must be a folder")
    target_dir = out.parent if as_file else out
    if is_inside(target_dir, input_dir):
        raise InputError(
            f"{out}: output must not be written inside the input folder {input_dir}; choose a folder outside it"
        )
    if as_file:
        return {cases[0].case_id: out}, out.parent / PROBABILITY_FOLDER
    targets = {c.case_id: out / f"{c.case_id}{output_ending(c.files[0], output_format)}" for c in cases}
    return targets, out / PROBABILITY_FOLDER


def write_probabilities(path: Path, probs: np.ndarray, geometry: ImageGeometry) -> None:
    """Write (N, Z, Y, X) softmax probabilities as a 4D (x, y, z, class) float32 NIfTI in ``geometry``, atomically."""
    data = np.ascontiguousarray(probs.transpose(3, 2, 1, 0)).astype(np.float32)
    header = geometry.header.copy() if geometry.header is not None else None
    img = nib.Nifti1Image(data, geometry.affine, header=header)
    img.header.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    sz, sy, sx = geometry.spacing
    img.header.set_zooms((sx, sy, sz, 1.0))  # the 4th axis is the class, not time
    img.header.set_intent("vector", (), name="softmax")
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(img, str(tmp))


def predict(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    model: str | os.PathLike | list[str | os.PathLike],
    device: str = "auto",
    tta: bool | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    reference: bool = False,
    backend: str = "auto",
    precision: str = "auto",
    forward_fn: ForwardFn | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    resample: bool = False,
    output_format: str = "nifti",
    keep_largest: bool = False,
) -> PredictReport:
    """Segment every case of ``input_path`` with ``model`` (a list: an ensemble); write ``{case}.nii.gz`` label maps.

    ``device``, ``overlap``, ``sw_batch_size``, ``resample`` and ``keep_largest``: see
    :class:`~lightmedseg.inference.segment.Segmenter`; ``output_format``: see :func:`plan_outputs`.

    ``forward_fn`` replaces the model's forward (x -> logits) when given (e.g. a compiled fast path).
    ``precision`` (``auto``, ``fp32``, ``bf16``) sets the fast path's activation dtype; ``auto`` is bf16
    on CPUs with native bf16 and fp32 elsewhere (see ``backends.resolve_precision``).
    """
    segmenter = Segmenter(model, device, tta=tta, overlap=overlap, sw_batch_size=sw_batch_size, resample=resample,
                          keep_largest=keep_largest, reference=reference, backend=backend, precision=precision,
                          forward_fn=forward_fn, window_progress=progress and sys.stderr.isatty())
    predictor = segmenter.predictor
    cases, input_dir = find_cases(input_path, predictor.in_channels)
    targets, prob_dir = plan_outputs(cases, output, input_dir, output_format)
    report = PredictReport()
    todo = []
    for case in cases:
        target = targets[case.case_id]
        if target.exists() and not overwrite:
            if len(cases) == 1 and image_ending(Path(output).name) is not None:
                raise FileExistsError(f"{target}: exists; pass --overwrite to replace it")
            report.skipped.append(target)
            continue
        todo.append(case)
    if report.skipped:
        log(f"skipping {len(report.skipped)} case(s) already predicted in {Path(output)} (--overwrite to redo)")
    log(f"{segmenter.description}; {describe(predictor)}{', resampled to the training grid' if resample else ''}")
    # a bar on a terminal; in a log file (not a terminal) one plain line per case instead of \r updates
    interactive = progress and sys.stderr.isatty()
    for number, case in enumerate(tqdm(todo, desc="predict", unit="case", disable=not interactive or not todo), 1):
        started = time.perf_counter()
        image, geometry = read_case(case)
        result, notes = segmenter.predict(image, geometry, probabilities=probabilities)
        for note in notes:
            log(f"warning: {case.case_id}: {note}")
        write_prediction(targets[case.case_id], result.labels, geometry, segmenter.names)
        report.written.append(targets[case.case_id])
        if probabilities and result.probabilities is not None and prob_dir is not None:
            name = targets[case.case_id].name  # {case}.nii.gz, or the OUTPUT file's name, always as NIfTI
            p = prob_dir / (name[: len(name) - len(image_ending(name) or "")] + ".nii.gz")
            write_probabilities(p, result.probabilities, geometry)
            report.probabilities.append(p)
        if progress and not interactive:
            log(f"predict: {number}/{len(todo)} {case.case_id} ({time.perf_counter() - started:.1f} s)")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if report.written:  # labels.json + labels.ctbl in an OUTPUT folder; {name}.labels.json beside an OUTPUT file
        out = Path(output)
        ending = image_ending(out.name)
        folder, prefix = (out.parent, out.name[: -len(ending)] + ".") if ending else (out, "")
        report.sidecars = write_label_sidecars(folder, segmenter.names, prefix=prefix)
    return report
