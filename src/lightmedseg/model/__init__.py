"""The LightMedSeg network and its parts, one module per section of the paper."""

from lightmedseg.model.anchors import GlobalAnchorDetector
from lightmedseg.model.decoder import DecoderStage, SpatialPositionBias, anchor_offset_maps
from lightmedseg.model.encoder import Encoder, EncoderStage
from lightmedseg.model.lspm import LocalStructuralPriorModule
from lightmedseg.model.network import LightMedSeg
from lightmedseg.model.skip_router import MultiScaleSkipRouter
from lightmedseg.model.stem import PatchEmbeddingStem

__all__ = [
    "LightMedSeg", "PatchEmbeddingStem", "GlobalAnchorDetector", "LocalStructuralPriorModule",
    "Encoder", "EncoderStage", "MultiScaleSkipRouter", "DecoderStage", "SpatialPositionBias",
    "anchor_offset_maps",
]
