"""Fast vs plain predictions on real ACDC volumes, with a briefly trained model (issue 6).

No trained LightMedSeg ships with the repository, and a randomly initialised network's argmax is
mostly noise, so this script first trains one briefly on real ACDC crops (fast fp32 training path),
after checking on the first steps that the fast and plain training paths follow the same loss curve
(same data, same seed). It then predicts whole held-out volumes (nnFormer validation patients) with
the plain eager fp32 forward, the fast fp32 path and the fast bf16 path, and reports the Dice between
the fast and plain label maps (target >= 0.995) and each against the ground truth.

    .venv/bin/python benchmarks/check_fast_real.py [--steps 40] [--compare-steps 6]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.nn import functional as F

from lightmedseg import LightMedSeg
from lightmedseg.fast import fast_forward, fast_train_forward

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "acdc-wsl4mis"
VALIDATION = ("089", "090", "091", "093")
CROP = (16, 160, 160)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["image"][:].astype(np.float32), f["label"][:].astype(np.int64)


def pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    pads = [(0, max(0, s - a)) for a, s in zip(array.shape, shape)]
    return np.pad(array, pads)


def random_crop(image: np.ndarray, label: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    image, label = pad_to(image, CROP), pad_to(label, CROP)
    starts = [rng.randint(0, a - c) for a, c in zip(image.shape, CROP)]
    box = tuple(slice(s, s + c) for s, c in zip(starts, CROP))
    return image[box], label[box]


def batches(cases: list[tuple[np.ndarray, np.ndarray]], seed: int, batch: int = 2):
    rng = random.Random(seed)
    while True:
        picks = [random_crop(*rng.choice(cases), rng) for _ in range(batch)]
        yield (torch.from_numpy(np.stack([p[0] for p in picks]))[:, None],
               torch.from_numpy(np.stack([p[1] for p in picks])))


def train(model: LightMedSeg, fast: bool, cases, steps: int, seed: int = 0) -> list[float]:
    forward = fast_train_forward(model) if fast else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-5)
    model.train()
    losses = []
    for _, (x, y) in zip(range(steps), batches(cases, seed)):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y, weight=torch.tensor([0.25, 1.0, 1.0, 1.0]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def dice(a: np.ndarray, b: np.ndarray, classes=(1, 2, 3)) -> float:
    """Mean over classes present in either map of the per-class Dice; 1.0 when none is present."""
    scores = []
    for c in classes:
        pa, pb = a == c, b == c
        denom = pa.sum() + pb.sum()
        if denom:
            scores.append(2.0 * np.logical_and(pa, pb).sum() / denom)
    return float(np.mean(scores)) if scores else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40, help="training steps of the model used for predictions")
    ap.add_argument("--compare-steps", type=int, default=6, help="steps run through both training paths")
    ap.add_argument("--train-cases", type=int, default=12)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: real data {DATA} is absent")
        return 0
    torch.manual_seed(0)
    files = sorted(DATA.glob("patient*.h5"))
    val_files = [f for f in files if f.name[7:10] in VALIDATION]
    train_files = [f for f in files if f.name[7:10] not in VALIDATION][: args.train_cases]
    cases = [load(f) for f in train_files]

    print(f"loss curves, same data and seed, {args.compare_steps} steps:")
    curves = {}
    for fast in (False, True):
        torch.manual_seed(0)
        model = LightMedSeg(1, 4)
        t0 = time.perf_counter()
        curves[fast] = train(model, fast, cases, args.compare_steps)
        print(f"  {'fast ' if fast else 'plain'} {[round(v, 4) for v in curves[fast]]}  "
              f"({(time.perf_counter() - t0) / args.compare_steps:.2f} s/step)")
    diff = max(abs(a - b) for a, b in zip(curves[False], curves[True]))
    print(f"  max |loss difference| {diff:.2e}")

    torch.manual_seed(0)
    model = LightMedSeg(1, 4)
    losses = train(model, True, cases, args.steps)
    print(f"trained {args.steps} fast steps: loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f} (last 5)")
    model.eval()
    paths = {"fast fp32": fast_forward(model), "fast bf16": fast_forward(model, dtype=torch.bfloat16)}
    print("\n| volume | shape | foreground voxels (plain) | Dice fast fp32 vs plain | Dice fast bf16 vs plain "
          "| voxel agreement bf16 | Dice plain vs ground truth |\n|---|---|---:|---:|---:|---:|---:|")
    worst = 1.0
    for f in val_files:
        image, label = load(f)
        shape = tuple(-(-s // 16) * 16 for s in image.shape)
        x = torch.from_numpy(pad_to(image, shape))[None, None]
        box = tuple(slice(0, s) for s in image.shape)
        with torch.no_grad():
            plain = model(x).argmax(1)[0].numpy()[box]
        preds = {k: fn(x).argmax(1)[0].numpy()[box] for k, fn in paths.items()}
        d32, d16 = dice(preds["fast fp32"], plain), dice(preds["fast bf16"], plain)
        worst = min(worst, d32, d16)
        print(f"| {f.stem} | {image.shape} | {(plain > 0).sum()} | {d32:.4f} | {d16:.4f} | "
              f"{(preds['fast bf16'] == plain).mean():.4%} | {dice(plain, label):.3f} |")
    print(f"\nworst Dice fast vs plain: {worst:.4f} (target >= 0.995)")
    return 0 if worst >= 0.995 else 1


if __name__ == "__main__":
    raise SystemExit(main())
