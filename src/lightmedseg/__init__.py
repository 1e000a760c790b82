"""LightMedSeg: lightweight 3D medical image segmentation with learned spatial anchors.

Public API::

    from lightmedseg import LightMedSeg, load_config, load_model
    model = LightMedSeg(in_channels=4, num_classes=4)          # an ordinary nn.Module
"""

from lightmedseg.config import load_config
from lightmedseg.fast import fast_forward
from lightmedseg.model import LightMedSeg

__all__ = ["LightMedSeg", "fast_forward", "load_config", "load_model", "__version__"]
__version__ = "0.1.0"


def load_model(source, device="cpu"):
    """Load a trained model from a run folder, checkpoint file or shipped model name (see checkpoint.py)."""
    from lightmedseg.checkpoint import load_model as _load

    return _load(source, device=device)
