"""ACDC's per-patient ``Info.cfg``: which frames are end-diastole and end-systole (and the patient's group).

Read by the ACDC converter (:mod:`lightmedseg.data.convert.acdc`) and by predict's cardiac statistics
(:mod:`lightmedseg.inference.statistics`), which pair a patient's ED and ES predictions by these frames.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightmedseg.data.errors import DataError

INFO_CFG = "Info.cfg"
PHASES = ("ED", "ES")


def read_info_cfg(path: str | os.PathLike) -> dict[str, str]:
    """The ``key: value`` lines of an ACDC ``Info.cfg`` (``ED: 1``, ``ES: 12``, ``Group: DCM``, ...).

    Raises:
        DataError: naming the file, when the ``ED`` or ``ES`` entry is missing or not a frame number.
    """
    info = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    for key in PHASES:
        if not info.get(key, "").isdigit():
            raise DataError(f"{path}: missing or non-integer {key!r} entry (expected e.g. '{key}: 1')")
    return info


def phase_frames(path: str | os.PathLike) -> dict[str, int]:
    """``{"ED": frame, "ES": frame}`` of an ACDC ``Info.cfg`` (see :func:`read_info_cfg`)."""
    info = read_info_cfg(path)
    return {key: int(info[key]) for key in PHASES}


__all__ = ["INFO_CFG", "PHASES", "phase_frames", "read_info_cfg"]
