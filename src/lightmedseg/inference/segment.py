"""One call from an image to a label map: :func:`segment`, and :class:`Segmenter`, the path it shares with
``lightmedseg predict``.

::

    import lightmedseg
    seg = lightmedseg.segment("case.nrrd", model="acdc")      # nibabel.Nifti1Image in the input's geometry
    seg.to_filename("case_seg.nii.gz")

``image`` is a path in any supported format (NIfTI, NRRD, MetaImage), a folder of channel files
``{case}_{XXXX}.ext`` holding one case, a DICOM series folder, or a ``nibabel`` image. The result has the
input's shape, affine and spacing and the model's label values; its NIfTI intent is ``label`` and its
description names the labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lightmedseg.data.io import ImageGeometry, _geometry, _nifti, default_file_mode
from lightmedseg.data.readers import NIFTI_ENDINGS, image_ending, label_dtype, write_labels
from lightmedseg.inference.options import DEVICES_HELP, OUTPUT_FORMATS, pick_device
from lightmedseg.inference.predictor import ForwardFn, Prediction, PredictionError, Predictor

LABELS_JSON = "labels.json"
SLICER_COLOR_TABLE = "labels.ctbl"
# Colours of label values 1, 2, ... in the Slicer colour table (background is transparent black).
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240),
           (245, 130, 48), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def label_names(config: Mapping) -> dict[int, str]:
    """Label value -> name from the model config's ``labels`` (name -> value); values as names without it."""
    labels = config.get("labels")
    if isinstance(labels, Mapping) and labels:
        return {int(v): str(k) for k, v in sorted(labels.items(), key=lambda kv: kv[1])}
    n = int(config["model"]["num_classes"])
    return {i: ("background" if i == 0 else f"label_{i}") for i in range(n)}


def label_image(labels: np.ndarray, geometry: ImageGeometry, names: Mapping[int, str]):
    """A NIfTI label map in ``geometry``: intent ``label`` and the label names in the description."""
    img = _nifti(labels, geometry, label_dtype(np.asarray(labels)))
    img.header.set_intent("label")
    descrip = " ".join(f"{v}={n}" for v, n in names.items())
    img.header["descrip"] = descrip.encode()[:79]
    return img


def write_prediction(path: str | os.PathLike, labels: np.ndarray, geometry: ImageGeometry, names: Mapping[int, str]) -> None:
    """Write a label map in the format its name says; NIfTI outputs carry the label names (see :func:`label_image`)."""
    if image_ending(Path(path).name) in NIFTI_ENDINGS:
        import nibabel as nib

        from lightmedseg.io_utils import atomic_path

        with atomic_path(path, suffix=".nii.gz" if str(path).endswith(".gz") else ".nii") as tmp:
            nib.save(label_image(labels, geometry, names), str(tmp))
            os.chmod(tmp, default_file_mode())
    else:
        write_labels(path, labels, geometry)


def write_label_sidecars(folder: str | os.PathLike, names: Mapping[int, str], prefix: str = "") -> list[Path]:
    """``labels.json`` (value -> name) and a 3D Slicer colour table ``labels.ctbl`` in ``folder``."""
    from lightmedseg.io_utils import write_json_atomic, write_text_atomic

    folder = Path(folder)
    json_path, ctbl_path = folder / f"{prefix}{LABELS_JSON}", folder / f"{prefix}{SLICER_COLOR_TABLE}"
    write_json_atomic(json_path, {str(v): n for v, n in names.items()})
    lines = ["# 3D Slicer colour table written by lightmedseg predict: value name R G B A"]
    for i, (value, name) in enumerate(names.items()):
        r, g, b = (0, 0, 0) if value == 0 else PALETTE[(i - 1) % len(PALETTE)]
        lines.append(f"{value} {name.replace(' ', '_')} {r} {g} {b} {0 if value == 0 else 255}")
    write_text_atomic(ctbl_path, "\n".join(lines) + "\n")
    return [json_path, ctbl_path]


def output_ending(input_file: Path | None, output_format: str) -> str:
    """Ending of a case's output file: ``.nii.gz`` (``nifti``) or the input's own (``input``; DICOM -> NIfTI)."""
    if output_format not in OUTPUT_FORMATS:
        raise PredictionError(f"--output-format {output_format!r}: expected one of {list(OUTPUT_FORMATS)}")
    if output_format == "nifti" or input_file is None or input_file.is_dir():
        return ".nii.gz"
    ending = image_ending(input_file.name) or ".nii.gz"
    return {".mhd": ".mha", ".nhdr": ".nrrd"}.get(ending, ending)  # one self-contained file per output


class Segmenter:
    """A loaded model with its prediction options; the one path of :func:`segment` and ``lightmedseg predict``.

    Args:
        model: run folder, model file, shipped model name or exported ``.onnx`` file; or a list of them
            (e.g. the folds of a cross-validation), whose softmax probabilities are averaged. Ensemble members
            must share input channels and label values; each keeps its own preprocessing and window.
        device: see :data:`DEVICES_HELP`.
        tta: mirroring test-time augmentation (default: the model config's).
        overlap: sliding-window overlap in [0, 1) (default: the model config's, else 0.5).
        sw_batch_size: windows evaluated at once (default: the model config's, else 1).
        resample: predict on the training spacing/orientation and resample the probabilities back.
        keep_largest: keep only the largest connected component of each foreground class (needs scipy).
        reference, backend, precision, forward_fn: see :func:`lightmedseg.inference.pipeline.predict`.
    """

    def __init__(
        self,
        model: str | os.PathLike | Sequence[str | os.PathLike] = "acdc",
        device: str = "auto",
        *,
        tta: bool | None = None,
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        resample: bool = False,
        keep_largest: bool = False,
        reference: bool = False,
        backend: str = "auto",
        precision: str = "auto",
        forward_fn: ForwardFn | None = None,
    ) -> None:
        from lightmedseg.inference.backends import load_backend
        from lightmedseg.inference.cards import with_card
        from lightmedseg.inference.geometry import training_geometry

        if sw_batch_size is not None and int(sw_batch_size) < 1:
            raise PredictionError(f"--sw-batch-size {sw_batch_size}: expected a positive number of windows")
        models = [model] if isinstance(model, (str, os.PathLike)) else list(model)
        if not models:
            raise PredictionError("no model given")
        if forward_fn is not None and len(models) > 1:
            raise PredictionError("forward_fn replaces one model's forward; it cannot be combined with an ensemble")
        self.device = pick_device(device)
        self.predictors: list[Predictor] = []
        descriptions = []
        for source in models:
            loaded = load_backend(source, backend=backend, device=self.device, reference=reference, precision=precision)
            config = with_card(loaded.config, source)
            predictor = Predictor(config, forward_fn or loaded.forward_fn, device=self.device, tta=tta,
                                  overlap=overlap, sw_batch_size=sw_batch_size)
            first = self.predictors[0] if self.predictors else predictor
            if (predictor.in_channels, predictor.label_values) != (first.in_channels, first.label_values):
                raise PredictionError(
                    f"ensemble: model {source} has {predictor.in_channels} channel(s) and labels {predictor.label_values}, "
                    f"but {models[0]} has {first.in_channels} and {first.label_values}; members must agree"
                )
            self.predictors.append(predictor)
            descriptions.append(loaded.description)
        self.predictor = self.predictors[0]  # the first member's config speaks for the ensemble (geometry, labels)
        self.config = self.predictor.config
        self.description = descriptions[0] if len(models) == 1 else (
            f"ensemble of {len(models)} models, probabilities averaged: " + " + ".join(descriptions))
        self.resample = bool(resample)
        self.keep_largest = bool(keep_largest)
        if self.resample and training_geometry(self.config) is None:
            raise PredictionError(f"--resample: model {model} does not record its training spacing (config 'geometry' or card.json)")
        self.names = label_names(self.config)

    def predict(self, image: np.ndarray, geometry: ImageGeometry, probabilities: bool = False) -> tuple[Prediction, list[str]]:
        """``(C, Z, Y, X)`` image in ``geometry`` -> prediction on the same grid, and geometry warnings."""
        from lightmedseg.inference.geometry import from_training_grid, geometry_notes, to_training_grid

        notes = [] if self.resample else geometry_notes(geometry, self.config)
        if not self.resample:
            result = self._predict_grid(image, probabilities)
        else:
            resampled, affine = to_training_grid(image, geometry, self.config)
            on_grid = self._predict_grid(resampled, probabilities=True)
            probs = from_training_grid(on_grid.probabilities, affine, geometry)
            labels = np.asarray(self.predictor.label_values, dtype=np.int16)[probs.argmax(axis=0)]
            result = Prediction(labels=labels, probabilities=probs if probabilities else None)
        if self.keep_largest:
            from lightmedseg.inference.postprocess import keep_largest_component

            result.labels = keep_largest_component(result.labels, [v for v in self.predictor.label_values if v != 0])
        return result, notes

    def _predict_grid(self, image: np.ndarray, probabilities: bool) -> Prediction:
        """One model's prediction, or the ensemble's: mean softmax of the members, then argmax."""
        if len(self.predictors) == 1:
            return self.predictor.predict_image(image, probabilities=probabilities)
        total = None
        for predictor in self.predictors:
            probs = predictor.predict_image(image, probabilities=True).probabilities
            total = probs if total is None else total + probs
        mean = total / len(self.predictors)
        labels = np.asarray(self.predictor.label_values, dtype=np.int16)[mean.argmax(axis=0)]
        return Prediction(labels=labels, probabilities=mean if probabilities else None)

    def __call__(self, image) -> "nib.Nifti1Image":  # noqa: F821
        """Segment one image (path, folder or nibabel image; see :func:`segment`) into a NIfTI label map."""
        import warnings

        array, geometry = read_input(image, self.predictor.in_channels)
        result, notes = self.predict(array, geometry)
        for note in notes:
            warnings.warn(note, GeometryWarning, stacklevel=2)
        return label_image(result.labels, geometry, self.names)


class GeometryWarning(UserWarning):
    """The input's spacing or orientation is not what the model was trained on."""


def read_input(image, n_channels: int) -> tuple[np.ndarray, ImageGeometry]:
    """``(C, Z, Y, X)`` float32 and geometry of a path, a one-case folder, a DICOM folder or a nibabel image."""
    import nibabel as nib

    if isinstance(image, nib.spatialimages.SpatialImage):
        data = np.asanyarray(image.dataobj)
        if data.ndim == 3:
            data = data[..., None]
        if data.ndim != 4:
            raise PredictionError(f"nibabel image of shape {image.shape}: expected 3D (x, y, z) or 4D (x, y, z, channel)")
        if not np.all(np.isfinite(data)):
            raise PredictionError("nibabel image: has NaN or Inf voxels; expected finite intensities")
        array = np.ascontiguousarray(data.transpose(3, 2, 1, 0), dtype=np.float32)
        return array, _geometry(image, data.shape[:3])
    if not isinstance(image, (str, os.PathLike)):
        raise PredictionError(f"segment(): image must be a path or a nibabel image, not {type(image).__name__}")
    from lightmedseg.inference.inputs import find_cases
    from lightmedseg.inference.pipeline import read_case

    cases, _ = find_cases(image, n_channels)
    if len(cases) != 1:
        raise PredictionError(f"{image}: holds {len(cases)} cases; segment() takes one (use lightmedseg.inference.predict for a folder)")
    return read_case(cases[0])


def segment(
    image,
    model: str | os.PathLike = "acdc",
    device: str = "auto",
    **options,
) -> "nib.Nifti1Image":  # noqa: F821
    """Segment one image with ``model`` and return the label map as a NIfTI image in the input's geometry.

    Args:
        image: a path (``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``), a folder of one
            case's channel files ``{case}_{XXXX}.ext``, a DICOM series folder, or a nibabel image
            (3D, or 4D ``(x, y, z, channel)``).
        model: shipped model name, run folder, model file or ``.onnx`` file.
        device: ``auto`` (GPU if present), ``cpu``, ``cuda``, ``cuda:N`` or ``gpu``.
        **options: ``tta``, ``overlap``, ``sw_batch_size``, ``resample``, ``keep_largest``, ``reference``, ``backend``,
            ``precision``, ``forward_fn`` (see :class:`Segmenter`).

    Warns :class:`GeometryWarning` when the input's spacing or orientation differs from the training
    geometry (by more than :data:`lightmedseg.inference.geometry.SPACING_WARN_FACTOR` for spacing).
    """
    return Segmenter(model, device, **options)(image)


__all__ = [
    "segment", "Segmenter", "GeometryWarning", "pick_device", "label_names", "label_image", "write_prediction",
    "write_label_sidecars", "output_ending", "read_input", "OUTPUT_FORMATS", "DEVICES_HELP",
]
