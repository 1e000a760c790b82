"""Fast CPU paths for LightMedSeg (issue 6): the same function and parameters, re-associated and tuned.

* :func:`fast_logits` -- the rewritten forward itself (``model, x -> logits``), differentiable;
* :func:`fast_forward` -- inference callable (inference mode, in-place chains, optional bf16 / compile);
* :func:`fast_train_forward` -- module wrapper to use as the trainer's forward.

See docs/performance.md for what each lever bought on this machine.
"""

from lightmedseg.fast.graph import fast_logits
from lightmedseg.fast.runtime import FastTrainForward, fast_forward, fast_train_forward

__all__ = ["fast_logits", "fast_forward", "fast_train_forward", "FastTrainForward"]
