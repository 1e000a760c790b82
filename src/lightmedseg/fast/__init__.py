"""Fast CPU paths for LightMedSeg (issue 6): the same function and parameters, re-associated and tuned.

See docs/performance.md for what each lever bought on this machine.
"""

from lightmedseg.fast.graph import fast_logits

__all__ = ["fast_logits"]
