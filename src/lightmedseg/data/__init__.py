"""Data stage: readers, canonical nnU-Net v2 raw layout, label conventions, preprocessing, splits,
training loaders, importers and the synthetic phantom generator.

Submodules are imported lazily by their users (``lightmedseg.data.io``, ``.layout``, ...) so that
importing the package does not pull in MONAI or h5py.
"""

from lightmedseg.data.errors import DataError

__all__ = ["DataError"]
