"""File-level prediction: find cases, decide output paths safely, predict, write NIfTI in native geometry.

Safety rules: outputs are never written inside the input folder; existing outputs are skipped (folder
output) or refused (file output) unless ``overwrite``; every file is written atomically, and all cases are
checked (channel files present, count matches the model) before the first one is predicted.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from lightmedseg.data.io import ImageGeometry, read_4d, read_image_channels, write_label
from lightmedseg.inference.backends import load_backend
from lightmedseg.inference.inputs import CaseInput, InputError, find_cases
from lightmedseg.inference.predictor import ForwardFn, Prediction, Predictor, describe
from lightmedseg.io_utils import atomic_path, is_inside

NIFTI_ENDINGS = (".nii.gz", ".nii")
PROBABILITY_FOLDER = "probabilities"


@dataclass
class PredictReport:
    """What a prediction run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)


def read_case(case: CaseInput) -> tuple[np.ndarray, ImageGeometry]:
    """Image (C, Z, Y, X) float32 and its geometry, from one 4D file or one 3D file per channel."""
    return read_4d(case.files[0]) if case.four_d else read_image_channels(case.files)


def plan_outputs(
    cases: list[CaseInput], output: str | os.PathLike, input_dir: Path
) -> tuple[dict[str, Path], Path | None]:
    """Output label file per case, and the probability folder base; refuses paths inside the input folder."""
    out = Path(output)
    as_file = out.name.endswith(NIFTI_ENDINGS)
    if as_file and len(cases) != 1:
        raise InputError(f"{out}: a file name as OUTPUT needs a single case, but INPUT holds {len(cases)}; give a folder")
    if as_file and out.is_dir():
        raise InputError(f"{out}: is a folder, but its name ends like a NIfTI file; pick another name")
    if not as_file and out.is_file():
        raise InputError(f"{out}: exists and is a file; OUTPUT for several cases must be a folder")
    target_dir = out.parent if as_file else out
    if is_inside(target_dir, input_dir):
        raise InputError(
            f"{out}: output must not be written inside the input folder {input_dir}; choose a folder outside it"
        )
    if as_file:
        return {cases[0].case_id: out}, out.parent / PROBABILITY_FOLDER
    return {c.case_id: out / f"{c.case_id}.nii.gz" for c in cases}, out / PROBABILITY_FOLDER


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
    model: str | os.PathLike,
    device: str = "cpu",
    tta: bool | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    reference: bool = False,
    backend: str = "auto",
    precision: str = "auto",
    forward_fn: ForwardFn | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> PredictReport:
    """Segment every case of ``input_path`` with ``model`` and write ``{case}.nii.gz`` label maps.

    ``forward_fn`` replaces the model's forward (x -> logits) when given (e.g. a compiled fast path).
    ``backend`` (``auto``, ``openvino``, ``torch``, ``onnxruntime``): ``auto`` is OpenVINO on the CPU when
    it is installed, the PyTorch fast path otherwise (see ``backends.auto_backend``).
    ``precision`` (``auto``, ``fp32``, ``bf16``) sets OpenVINO's inference precision or the fast path's
    activation dtype; ``auto`` is bf16 on CPUs with native bf16 and fp32 elsewhere.
    """
    loaded = load_backend(model, backend=backend, device=device, reference=reference, precision=precision)
    predictor = Predictor(loaded.config, forward_fn or loaded.forward_fn, device=device, tta=tta)
    cases, input_dir = find_cases(input_path, predictor.in_channels)
    targets, prob_dir = plan_outputs(cases, output, input_dir)
    report = PredictReport()
    todo = []
    for case in cases:
        target = targets[case.case_id]
        if target.exists() and not overwrite:
            if len(cases) == 1 and Path(output).name.endswith(NIFTI_ENDINGS):
                raise FileExistsError(f"{target}: exists; pass --overwrite to replace it")
            report.skipped.append(target)
            continue
        todo.append(case)
    if report.skipped:
        log(f"skipping {len(report.skipped)} case(s) already predicted in {Path(output)} (--overwrite to redo)")
    log(f"{loaded.description}; {describe(predictor)}")
    for case in tqdm(todo, desc="predict", unit="case", disable=not progress or not todo):
        image, geometry = read_case(case)
        result: Prediction = predictor.predict_image(image, probabilities=probabilities)
        write_label(targets[case.case_id], result.labels, geometry)
        report.written.append(targets[case.case_id])
        if probabilities and result.probabilities is not None and prob_dir is not None:
            p = prob_dir / targets[case.case_id].name  # {case}.nii.gz, or the OUTPUT file's name
            write_probabilities(p, result.probabilities, geometry)
            report.probabilities.append(p)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report
