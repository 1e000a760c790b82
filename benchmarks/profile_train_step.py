"""Where one training step's time goes: torch.profiler tables (self CPU time) of the forward + Eq. 22 loss, the
backward and AdamW, separately, for the fast path or the UNet, fp32 or bf16 autocast (issue 25).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_train_step.py --model lightmedseg --amp bf16 [--rows 12]
    [--torch-kernels] [--shapes]

Same step as bench_train_step.py (acdc preset, batch 2 x 1 x 16 x 160 x 160); two warm-up steps, then one
profiled. ``--shapes`` groups the rows by input shape (which conv / norm costs what). Prints the tables.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from lightmedseg.config import load_config
from lightmedseg.fast import fast_train_forward
from lightmedseg.model.factory import build_model
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss
from lightmedseg.training.runtime import amp_policy, autocast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("lightmedseg", "unet"), default="lightmedseg")
    ap.add_argument("--amp", choices=("none", "bf16"), default="none")
    ap.add_argument("--preset", default="acdc")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--torch-kernels", action="store_true", help="fast path without lightmedseg.fast.autograd")
    ap.add_argument("--shapes", action="store_true", help="group rows by input shape")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    over = ["model.architecture=unet", "model.deep_supervision=0"] if args.model == "unet" else []
    cfg = load_config(args.preset, overrides=over)
    torch.manual_seed(0)
    model = build_model(cfg)
    net = fast_train_forward(model, train_kernels=not args.torch_kernels) if args.model == "lightmedseg" else model
    net.train()
    classes = int(cfg["model"]["num_classes"])
    loss_fn = DeepSupervisionLoss(LightMedSegLoss(classes))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    size = tuple(cfg["data"]["patch_size"])
    x = torch.randn(2, int(cfg["model"]["in_channels"]), *size)
    y = torch.randint(0, classes, (2, 1, *size))
    dtype = amp_policy(args.amp, torch.device("cpu")).dtype

    def forward() -> torch.Tensor:
        with autocast(torch.device("cpu"), dtype):
            return loss_fn(net(x), y)

    for _ in range(2):
        loss = forward()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as p_fwd:
        loss = forward()
    opt.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as p_bwd:
        loss.backward()
    with profile(activities=[ProfilerActivity.CPU]) as p_opt:
        opt.step()
    for name, prof in (("forward + loss", p_fwd), ("backward", p_bwd), ("AdamW", p_opt)):
        table = prof.key_averages(group_by_input_shape=args.shapes)
        total = sum(e.self_cpu_time_total for e in table) / 1e6
        print(f"== {args.model} amp={args.amp} {name}: {total:.3f} s self CPU")
        print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
