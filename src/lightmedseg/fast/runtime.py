"""Ready-to-call fast paths: ``fast_forward`` for inference and ``fast_train_forward`` for training steps."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lightmedseg.fast.graph import fast_logits

ForwardFn = Callable[[torch.Tensor], torch.Tensor]


def fast_forward(
    model: nn.Module,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    channels_last: bool = True,
    compile: bool = False,
) -> ForwardFn:
    """A callable ``x -> logits`` computing ``model``'s forward with the fast path, for inference.

    Same parameters, same input (B x C x D x H x W float, any device/dtype) and output (float32
    logits, contiguous). ``dtype=None`` runs in float32 (max abs logit difference to the reference
    ~1e-6); ``dtype=torch.bfloat16`` trades exactness for speed on CPUs with native bf16
    (:func:`lightmedseg.hardware.native_bf16`). ``compile=True`` wraps the graph in ``torch.compile``
    (inductor; the first call per input shape compiles for minutes on a small CPU). The model is moved to ``device`` and put
    in eval mode; the call runs under ``torch.inference_mode`` with in-place elementwise chains, so
    no activation outlives the op that consumes it.
    """
    dev = torch.device(device)
    model.to(dev).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return fast_logits(model, x, inplace=True, dtype=dtype, channels_last=channels_last)

    fn: ForwardFn = torch.compile(run, dynamic=False) if compile else run

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(x.to(dev))

    return forward


class FastTrainForward(nn.Module):
    """A module wrapper whose ``forward(x)`` is the fast path with autograd (training).

    It holds the reference model as a submodule, so ``parameters()``, ``state_dict()`` (under the
    ``model.`` prefix), DDP and optimisers see exactly the reference parameters; gradients flow to them.
    ``dtype=torch.bfloat16`` casts activations (use the trainer's autocast instead if it has one).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = True,
                 train_kernels: bool = True, fused_chains: bool = True) -> None:
        super().__init__()
        self.fused_chains = fused_chains
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.train_kernels = train_kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_logits(self.model, x, inplace=False, dtype=self.dtype, channels_last=self.channels_last,
                           train_kernels=self.train_kernels, fused_chains=self.fused_chains)


class InferenceGraph(nn.Module):
    """The fast forward as a module to hand to a graph engine (``openvino.convert_model``, ONNX export).

    Same function and parameters as ``model``; out-of-place, contiguous layout (the engine picks its own) and
    group norms in the "reduce" form (:func:`lightmedseg.fast.graph.fast_logits`), which spares OpenVINO a
    layout conversion around every norm. The reference ``model`` is a submodule, so the engine sees its weights.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference only, and without autograd the traced graph is the same on every invocation (the
        # tracers' sanity check re-runs it: OpenVINO's PyTorch frontend refuses the module otherwise).
        with torch.no_grad():
            return fast_logits(self.model, x, inplace=False, channels_last=False, norm="reduce")


def fast_train_forward(model: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = True,
                       train_kernels: bool = True, fused_chains: bool = True) -> FastTrainForward:
    """The training-step forward: ``trainer.forward_fn = fast_train_forward(model)`` (see docs/performance.md).

    ``train_kernels``: the hand-written depthwise-conv and group-norm backwards (:mod:`lightmedseg.fast.autograd`);
    ``fused_chains``: with them, its fused elementwise chains (router mixing, ...).
    """
    return FastTrainForward(model, dtype=dtype, channels_last=channels_last, train_kernels=train_kernels,
                            fused_chains=fused_chains)
