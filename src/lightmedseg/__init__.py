"""LightMedSeg: lightweight 3D medical image segmentation with learned spatial anchors.

Public API::

    from lightmedseg import LightMedSeg, load_config, load_model, segment
    model = LightMedSeg(in_channels=4, num_classes=4)          # an ordinary nn.Module
    labels = segment("case.nrrd", model="acdc")               # nibabel.Nifti1Image in the input's geometry

Nothing is imported until it is used (PEP 562 ``__getattr__``), so ``import lightmedseg`` and the command
line's ``--help`` / ``--version`` do not load PyTorch (tests/test_import_graph.py holds the line).
"""

from __future__ import annotations

__all__ = ["LightMedSeg", "fast_forward", "load_config", "load_model", "segment", "__version__"]
__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)


def __getattr__(name: str):
    """``LightMedSeg``, ``fast_forward`` and ``load_config``, imported on first use."""
    if name == "LightMedSeg":
        from lightmedseg.model import LightMedSeg

        return LightMedSeg
    if name == "fast_forward":
        from lightmedseg.fast import fast_forward

        return fast_forward
    if name == "load_config":
        from lightmedseg.config import load_config

        return load_config
    raise AttributeError(f"module 'lightmedseg' has no attribute {name!r}")


def load_model(source, device="cpu"):
    """Load a trained model from a run folder, checkpoint file or shipped model name (see checkpoint.py)."""
    from lightmedseg.checkpoint import load_model as _load

    return _load(source, device=device)


def segment(image, model="acdc", device=None, **options):
    """Segment one image (path in any supported format, one-case folder, DICOM folder or nibabel image)
    and return a ``nibabel.Nifti1Image`` label map in the input's geometry.

    See :func:`lightmedseg.inference.segment.segment` for the options (``options=PredictOptions(...)``, or
    ``tta``, ``overlap``, ``sw_batch_size``, ``resample``, ... as keywords); ``lightmedseg predict`` runs the
    same code. ``device=None``: the options' device (default ``auto``).
    """
    from lightmedseg.inference.segment import segment as _segment

    return _segment(image, model=model, device=device, **options)
