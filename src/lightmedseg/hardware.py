"""What this machine's hardware offers, for choices that depend on it (kept free of package imports).

:func:`native_bf16` is the package's one bf16 detector: ``--precision auto`` follows it on the torch fast
path (:func:`lightmedseg.inference.backends.resolve_precision`) and with OpenVINO.
"""

from __future__ import annotations

import platform

import torch

_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers (torch>=2.3)


def native_bf16() -> bool:
    """True when this CPU runs bf16 natively (AMX or AVX512-BF16), where bf16 convolutions pay off.

    Conservative: False when this torch build lacks the probes (bf16 would then be emulated, or unknown).
    """
    probes = (getattr(torch.cpu, name, None) for name in _BF16_PROBES)
    return any(bool(probe()) for probe in probes if probe is not None)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform string where that is missing), for benchmark records."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


__all__ = ["cpu_name", "native_bf16"]
