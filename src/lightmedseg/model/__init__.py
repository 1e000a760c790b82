"""The LightMedSeg network and its parts, one module per section of the paper."""

from lightmedseg.model.anchors import GlobalAnchorDetector
from lightmedseg.model.decoder import Decoder, DecoderStage, SkipAdapter, SpatialPositionBias, anchor_offset_maps, size_divisor
from lightmedseg.model.encoder import Encoder, EncoderStage
from lightmedseg.model.lspm import LocalStructuralPriorModule
from lightmedseg.model.network import LightMedSeg
from lightmedseg.model.skip_router import MultiScaleSkipRouter
from lightmedseg.model.stem import PatchEmbeddingStem

__all__ = [
    "LightMedSeg", "PatchEmbeddingStem", "GlobalAnchorDetector", "LocalStructuralPriorModule",
    "Encoder", "EncoderStage", "MultiScaleSkipRouter", "Decoder", "DecoderStage", "SkipAdapter", "SpatialPositionBias",
    "anchor_offset_maps", "size_divisor",
]
