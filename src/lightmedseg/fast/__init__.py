"""Fast CPU paths for LightMedSeg (issue 6): the same function and parameters, re-associated and tuned.

* :func:`fast_logits` -- the rewritten forward itself (``model, x -> logits``), differentiable;
* :func:`fast_forward` -- inference callable (inference mode, in-place chains, optional bf16 / compile);
* :func:`fast_train_forward` -- module wrapper to use as the trainer's forward;
* :class:`InferenceGraph` -- the fast forward as a module for graph engines (OpenVINO conversion);
* :func:`supports` -- whether the rewrite handles a given model (callers fall back to the reference otherwise).
* :mod:`lightmedseg.fast.autograd` -- hand-written backwards (depthwise conv, channels-last group norm) and fused
  element-wise chains (router mixing, squeeze-excite, FiLM in the norm) the training path uses (issue 25).

The rewrite is a second implementation of ``lightmedseg.model``; tests/test_fast_contract.py and
test_fast_equivalence.py check it against the reference over random configurations.

See docs/performance.md for what each lever bought on this machine.
"""

from lightmedseg.fast.graph import HANDLED_OPTIONS, Support, fast_logits, supports
from lightmedseg.fast.runtime import FastTrainForward, InferenceGraph, fast_forward, fast_train_forward

__all__ = ["fast_logits", "supports", "Support", "HANDLED_OPTIONS", "fast_forward", "fast_train_forward",
           "FastTrainForward", "InferenceGraph"]
