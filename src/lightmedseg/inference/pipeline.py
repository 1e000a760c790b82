"""File-level prediction: find cases, decide output paths safely, predict, write label maps in native geometry.

Every case goes through :class:`lightmedseg.inference.segment.Segmenter`, the same path as
:func:`lightmedseg.segment`. Outputs are NIfTI (or the input's format with ``output_format="input"``, or
the format an OUTPUT file name says); ``labels.json`` and a 3D Slicer colour table name the labels.

Safety rules: outputs are never written inside the input folder nor inside the real folder of any input
file (symlinks resolved); existing outputs are skipped (folder output) or refused (file output) unless
``overwrite`` - a case counts as done only when every file asked for (label map, and probability map with
``probabilities``) exists; every file is written atomically and temporaries left by a killed run are
removed on start; all cases are checked (channel files present, count matches the model, readable
headers, finite affines, 3D with >= 2 voxels per axis) and the output folders tested for writability
before the first one is predicted.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from lightmedseg.data.errors import DataError
from lightmedseg.data.io import ImageGeometry
from lightmedseg.data.readers import DICOM_ENDINGS, image_ending, read_channels
from lightmedseg.inference.inputs import CaseInput, InputError, find_cases
from lightmedseg.inference.options import PredictOptions, predict_options
from lightmedseg.inference.predictor import ForwardFn, PredictionError, describe
from lightmedseg.inference.case_extras import CaseExtras
from lightmedseg.inference.provenance import check_provenance, provenance_path, provenance_record, write_provenance
from lightmedseg.inference.segment import (Segmenter, label_sidecars, output_ending, write_label_sidecars,
                                          write_prediction)
from lightmedseg.io_utils import atomic_path, check_writable, is_inside, real_folders, remove_stale_temporaries
from lightmedseg.write_rule import check_output_folder, check_text_file, is_complete

PROBABILITY_FOLDER = "probabilities"


@dataclass
class PredictReport:
    """What a prediction run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)  # labels.json and the Slicer colour table
    statistics: list[Path] = field(default_factory=list)  # statistics.json and statistics.csv (--statistics)
    previews: list[Path] = field(default_factory=list)  # one PNG per predicted case (--preview)


def read_case(case: CaseInput) -> tuple[np.ndarray, ImageGeometry]:
    """Image (C, Z, Y, X) float32 and its geometry, from one 4D file or one 3D file per channel (any format)."""
    return read_channels(case.files)


def select_part(cases: list[CaseInput], num_parts: int = 1, part_id: int = 0) -> list[CaseInput]:
    """Part ``part_id`` of ``num_parts`` of the cases (sorted by ID, every num_parts-th): array tasks or GPUs
    given the same INPUT and OUTPUT split the work without overlap, and together cover every case."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise InputError(f"--part-id must lie in [0, --num-parts) and --num-parts >= 1; got part {part_id} of {num_parts}")
    return sorted(cases, key=lambda c: c.case_id)[part_id::num_parts]


def plan_outputs(
    cases: list[CaseInput], output: str | os.PathLike, input_dir: Path, output_format: str = "nifti"
) -> tuple[dict[str, Path], Path | None]:
    """Output label file per case, and the probability folder base.

    An OUTPUT file name's ending picks its format; in a folder, ``output_format`` does (``nifti``/``input``).
    Refuses an image ending in the wrong case (``x.NII.GZ``), and any output inside the input folder or
    inside a folder that really holds an input file (symlinks resolved), so a link to an image can never
    lead to the image being replaced.
    """
    out = Path(output)
    ending = image_ending(out.name)  # matched case-insensitively
    if ending is not None and not out.name.endswith(ending):
        raise InputError(f"{out}: ends like an image file but not in lower case; write {ending} (or pick a folder name)")
    if ending is None and out.suffix.lower() in DICOM_ENDINGS:
        raise InputError(f"{out}: predict does not write DICOM; name the output .nii.gz, .nrrd or .mha (or a folder)")
    as_file = ending is not None
    if as_file and len(cases) != 1:
        raise InputError(f"{out}: a file name as OUTPUT needs a single case, but INPUT holds {len(cases)}; give a folder")
    if as_file and out.is_dir():
        raise InputError(f"{out}: is a folder, but its name ends like an image file; pick another name")
    if not as_file and out.is_file():
        raise InputError(f"{out}: exists and is a file; OUTPUT for several cases must be a folder")
    target_dir = out.parent if as_file else out
    protected = [input_dir, *sorted(real_folders(f for c in cases for f in c.files) - {input_dir.resolve()})]
    for folder in protected:
        if is_inside(target_dir, folder):
            raise InputError(
                f"{out}: output must not be written inside the input folder {folder}"
                + ("" if folder == input_dir else " (where the input files really are, links resolved)")
                + "; choose a folder outside it"
            )
    if as_file:
        return {cases[0].case_id: out}, out.parent / PROBABILITY_FOLDER
    targets = {c.case_id: out / f"{c.case_id}{output_ending(c.files[0], output_format)}" for c in cases}
    return targets, out / PROBABILITY_FOLDER


def probability_path(prob_dir: Path, target: Path) -> Path:
    """Where a case's probability map goes: ``{case}.nii.gz`` (always NIfTI) in the probability folder."""
    name = target.name
    return prob_dir / (name[: len(name) - len(image_ending(name) or "")] + ".nii.gz")


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
    options: PredictOptions | None = None,
    *,
    probabilities: bool = False,
    overwrite: bool = False,
    forward_fn: ForwardFn | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    num_parts: int = 1,
    part_id: int = 0,
    output_format: str = "nifti",
    statistics: bool = False,
    cardiac_phases: Sequence[str] | str | os.PathLike | None = None,
    preview: bool = False,
    **keywords,
) -> PredictReport:
    """Segment every case of ``input_path`` with ``model`` (a list: an ensemble); write ``{case}.nii.gz`` label maps.

    ``options`` (:class:`~lightmedseg.inference.options.PredictOptions`: device, TTA, window, resampling,
    post-processing, ensemble, backend, precision, reference) says how the model predicts, as for
    :class:`~lightmedseg.inference.segment.Segmenter`; ``**keywords`` (option names, e.g. ``device="cpu"``,
    the older form) replace its fields. ``output_format``: see :func:`plan_outputs`.

    ``forward_fn`` replaces the model's forward (x -> logits) when given (e.g. a compiled fast path).
    Options ``backend`` (``auto``, ``openvino``, ``torch``, ``onnxruntime``): ``auto`` is OpenVINO on the CPU when
    it is installed, the PyTorch fast path otherwise (see ``backends.auto_backend``).
    ``precision`` (``auto``, ``fp32``, ``bf16``) sets OpenVINO's inference precision or the fast path's
    activation dtype; ``auto`` is bf16 on CPUs with native bf16 and fp32 elsewhere.
    ``num_parts``/``part_id``: segment only that part of the cases (:func:`select_part`).
    ``statistics``: write ``statistics.json``/``.csv`` (volumes per case and label; cardiac function for a
    cardiac model, ED/ES paired by name or by ``cardiac_phases``), see :mod:`lightmedseg.inference.statistics`.
    ``preview``: one PNG per predicted case, ``{case}.preview.png`` beside its label map (:mod:`lightmedseg.viz.preview`).
    """
    if str(output) == "":  # Path("") would be the current folder
        raise InputError("OUTPUT is empty; give a folder or a .nii.gz file name")
    try:
        segmenter = Segmenter(model, predict_options(options, **keywords), forward_fn=forward_fn,
                              window_progress=progress and sys.stderr.isatty())
    except PredictionError as exc:
        raise PredictionError(f"{model}: {exc}") from None
    predictor = segmenter.predictor
    extras = CaseExtras(segmenter.names, statistics, cardiac_phases, preview)  # options checked before predicting
    cases, input_dir = find_cases(input_path, predictor.in_channels)
    if num_parts != 1 or part_id != 0:
        cases = select_part(cases, num_parts, part_id)
    targets, prob_dir = plan_outputs(cases, output, input_dir, output_format)
    sidecar_plan = check_outputs(targets, prob_dir if probabilities else None, output, segmenter.names, overwrite)
    for folder in {t.parent for t in targets.values()} | ({prob_dir} if probabilities and prob_dir else set()):
        check_writable(folder)
    out = Path(output)
    ending = image_ending(out.name)
    folder, prefix = (out.parent, out.name[: -len(ending)] + ".") if ending else (out, "")
    record = provenance_record(segmenter, output_format, {"backend": segmenter.options.backend,
                                                          "precision": segmenter.options.precision,
                                                          "sw_batch_size": predictor.sw_batch_size})
    if ending is None:  # a folder: outputs of another model or other options are refused (one file: exists -> refused)
        check_provenance(provenance_path(folder, prefix), record,
                         has_outputs=any(is_complete(t) for t in targets.values()), overwrite=overwrite)
    report = PredictReport()
    todo: list[tuple[CaseInput, bool, bool]] = []  # (case, write label, write probabilities)
    for case in cases:
        target = targets[case.case_id]
        prob = probability_path(prob_dir, target) if probabilities and prob_dir is not None else None
        remove_stale_temporaries(target, image_ending(target.name) or ".nii.gz")
        if prob is not None:
            remove_stale_temporaries(prob, ".nii.gz")
        need_label = overwrite or not is_complete(target)  # an empty file left by a failure is redone
        need_prob = prob is not None and (overwrite or not is_complete(prob))
        if not need_label and not need_prob:
            if len(cases) == 1 and image_ending(Path(output).name) is not None:
                raise FileExistsError(f"{target}: exists; pass --overwrite to replace it")
            report.skipped.append(target)
            extras.add_existing(case, target)
            continue
        todo.append((case, need_label, need_prob))
    if report.skipped:
        log(f"skipping {len(report.skipped)} case(s) already predicted in {Path(output)} (--overwrite to redo)")
    log(f"{segmenter.description}; {describe(predictor)}")
    # a bar on a terminal; in a log file (not a terminal) one plain line per case instead of \r updates
    interactive = progress and sys.stderr.isatty()
    for number, (case, need_label, need_prob) in enumerate(
            tqdm(todo, desc="predict", unit="case", disable=not interactive or not todo), 1):
        started = time.perf_counter()
        image, geometry = read_case(case)
        warn_constant_channels(case, image, log)
        log(f"{case.case_id}: {segmenter.resample_decision(geometry).line}")
        try:
            result, notes = segmenter.predict(image, geometry, probabilities=need_prob)
        except DataError as exc:  # resampling refused (the memory it would need): name the case's file
            raise DataError(f"{case.files[0]}: {exc}") from None
        for note in notes:
            log(f"warning: {case.case_id}: {note}")
        if number == 1:  # labels.json, labels.ctbl and provenance.json (or {name}.*) before the first output,
            # so a run stopped later (a full disk, a kill) is resumed by a rerun, not refused as unrecorded outputs
            report.sidecars = write_label_sidecars(*sidecar_plan, overwrite=overwrite)
            write_provenance(provenance_path(folder, prefix), record)
        target = targets[case.case_id]
        if need_label:
            write_prediction(target, result.labels, geometry, segmenter.names)
            report.written.append(target)
        if need_prob and result.probabilities is not None and prob_dir is not None:
            p = probability_path(prob_dir, target)
            write_probabilities(p, result.probabilities, geometry)
            report.probabilities.append(p)
        extras.add(case, target, image, result.labels, geometry, report)
        if progress and not interactive:
            log(f"predict: {number}/{len(todo)} {case.case_id} ({time.perf_counter() - started:.1f} s)")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if report.written or report.skipped:
        report.statistics = extras.finish(folder, prefix, log)
    return report


def check_outputs(targets: Mapping[str, Path], prob_dir: Path | None, output: str | os.PathLike,
                  names: Mapping[int, str], overwrite: bool) -> tuple[Path, Mapping[int, str], str]:
    """Apply :mod:`lightmedseg.write_rule` before any case is predicted: no output folder inside a dataset, no
    user's ``labels.json`` / ``labels.ctbl`` replaced without ``overwrite``. Returns the sidecars' (folder,
    names, prefix)."""
    for folder in {t.parent for t in targets.values()} | ({prob_dir} if prob_dir is not None else set()):
        check_output_folder(folder, "prediction output")
    out = Path(output)
    ending = image_ending(out.name)
    folder, prefix = (out.parent, out.name[: -len(ending)] + ".") if ending else (out, "")
    for path, text in label_sidecars(folder, names, prefix).items():
        check_text_file(path, text, overwrite, "label names")
    return folder, names, prefix


def warn_constant_channels(case: CaseInput, image: np.ndarray, log: Callable[[str], None]) -> None:
    """Log a warning for every channel whose voxels all have one value (e.g. an all-zero image)."""
    for c, channel in enumerate(image):
        if channel.size and channel.min() == channel.max():
            f = case.files[0] if case.four_d else case.files[c]
            where = f"{f} channel {c}" if case.four_d else str(f)
            log(f"WARNING: {where}: every voxel is {channel.flat[0]:g}; the image holds no structure, "
                "so the prediction is meaningless (background)")
