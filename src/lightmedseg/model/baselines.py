"""MONAI reference networks, built from the same config as LightMedSeg so that training, prediction and
benchmarks treat them alike (``model.architecture`` in a preset or ``--set model.architecture=unet``).

These are the comparison baselines of issue 7 and of ``benchmarks/``; they come from MONAI unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

BASELINES = ("unet", "segresnet", "unetr", "swinunetr")


def build_baseline(architecture: str, cfg: dict[str, Any], roi_size: tuple[int, int, int] = (128, 128, 128)) -> nn.Module:
    """Instantiate a MONAI network for ``in_channels``/``num_classes`` of ``cfg``.

    Args:
        architecture: one of :data:`BASELINES`.
        cfg: the ``model`` config section (``in_channels``, ``num_classes``; other keys are ignored).
        roi_size: input size, needed by the transformer models (UNETR).
    """
    from monai.networks import nets

    c_in, n_cls = int(cfg["in_channels"]), int(cfg["num_classes"])
    if architecture == "unet":
        # The bar used in issue 6/7: 16..256 channels, four downsampling levels, two residual units. With
        # model.strides (the LightMedSeg geometry of the preset, e.g. the anisotropic ACDC plan) the UNet
        # downsamples exactly as LightMedSeg does, so the two are compared on the same geometry.
        strides = [tuple(int(v) for v in s) if isinstance(s, (list, tuple)) else int(s)
                   for s in cfg.get("strides") or (2, 2, 2, 2)]
        return nets.UNet(3, c_in, n_cls, channels=(16, 32, 64, 128, 256), strides=strides, num_res_units=2)
    if architecture == "segresnet":
        return nets.SegResNet(spatial_dims=3, in_channels=c_in, out_channels=n_cls, init_filters=16)
    if architecture == "unetr":
        return nets.UNETR(c_in, n_cls, img_size=tuple(roi_size), feature_size=16, hidden_size=768,
                          mlp_dim=3072, num_heads=12, proj_type="perceptron", norm_name="instance")
    if architecture == "swinunetr":
        return nets.SwinUNETR(in_channels=c_in, out_channels=n_cls, feature_size=48, spatial_dims=3)
    raise ValueError(f"unknown model.architecture {architecture!r}; choose lightmedseg or one of {BASELINES}")
