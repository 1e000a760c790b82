"""Is LightMedSeg light in seconds? Its prediction and training step against MONAI's UNet on this CPU (issue 25).

Two tables, each configuration measured the way a user runs it:

* **prediction**, 1 x 4 x 128^3, ``--threads`` threads (default 2): every configuration in its OWN process
  (a fresh process per engine, as in deployment), median of ``--repeats`` calls after one warm-up call.
  ``lightmedseg predict``'s default backend is what :func:`lightmedseg.inference.backends.load_backend`
  picks for a model file (so this table follows the product, whatever the conversion route is);
  argmax agreement with the fp32 reference forward is printed beside each LightMedSeg row.
* **training step** (forward, Eq. 22 loss, backward, AdamW): the ``acdc`` preset's network on its training
  path (``train.fast``) vs the UNet with the same strides, batch 2 x 1 x 16 x 160 x 160, fp32 and bf16, 1 and 2
  threads; both models in ONE process, interleaved, so load from elsewhere hits them alike
  (``benchmarks/bench_train_step.py`` does the stepping).

    .venv/bin/python benchmarks/bench_vs_unet.py                 # both tables; run on an idle machine
    .venv/bin/python benchmarks/bench_vs_unet.py --only predict  # or --only train
    .venv/bin/python benchmarks/bench_vs_unet.py --write-doc     # also replace the section in docs/benchmarks.md
    .venv/bin/python benchmarks/bench_vs_unet.py --only readings --threads 1  # the two readings of Section 3.6
    .venv/bin/python benchmarks/bench_vs_unet.py --only predict --set model.final_transposed_conv=true  # a reading

``--only readings`` (not part of the doc section): OpenVINO of the plain module for the brats network in both
readings of Section 3.6 (``model.final_transposed_conv`` false / true) and the UNet, 1 x 4 x 128^3, compiled in
ONE process and timed interleaved, so the ratios hold on a loaded machine.

Prints what it measured, the date and the CPU; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightmedseg.hardware import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_per_volume import brats_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- vs-unet:start -->", "<!-- vs-unet:end -->"
RERUN = ".venv/bin/python benchmarks/bench_vs_unet.py"
SHAPE = (1, 4, 128, 128, 128)
UNET_DESC = "MONAI UNet 16-256, 2 residual units (4.8M)"

PREDICT: dict[str, str] = {  # configuration -> what it is
    "lms/predict_default": "LightMedSeg, `lightmedseg predict`'s default CPU backend (load_backend, precision auto)",
    "lms/openvino_fast_graph": "LightMedSeg, OpenVINO of the fast one-sample InferenceGraph (LIGHTMEDSEG_OPENVINO_GRAPH=fast), precision auto",
    "lms/openvino_plain": "LightMedSeg, openvino.convert_model of the plain module, precision auto",
    "lms/torch_fast": "LightMedSeg, torch fast path (`--backend torch`), precision auto",
    "lms/torch_eager": "LightMedSeg, plain eager fp32 (the reference forward)",
    "unet/openvino": f"{UNET_DESC}, OpenVINO, precision auto",
    "unet/torch_eager": f"{UNET_DESC}, eager fp32",
}




def _unet():
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=SHAPE[1], out_channels=4, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2).eval()


def _openvino_fn(module, precision: str):
    import numpy as np
    import openvino as ov
    import torch

    from lightmedseg.inference.openvino_backend import compile_properties, resolve_ov_precision

    with torch.no_grad():
        ov_model = ov.convert_model(module, example_input=torch.zeros(1, SHAPE[1], 32, 32, 32))
    ov_model.reshape(list(SHAPE))
    request = ov.Core().compile_model(ov_model, "CPU", compile_properties(resolve_ov_precision(precision))).create_infer_request()

    def run(x):
        request.infer({0: x.numpy()})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))
    return run


def predict_worker(name: str, threads: int, repeats: int, overrides: list[str]) -> dict:
    """Build one configuration in this fresh process, warm it up, time it; argmax agreement with the reference."""
    import torch

    torch.set_num_threads(threads)
    os.environ["LIGHTMEDSEG_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-vs-unet-cache-")
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))
    run, model, _ = brats_model_dir(tuple(overrides))  # the seeded, untrained brats-preset network (Table 1's)
    path = run / "model_best.safetensors"
    with torch.inference_mode():
        reference = model(x).argmax(1) if name.startswith("lms/") else None
    t0 = time.perf_counter()
    desc = ""
    if name in ("lms/predict_default", "lms/openvino_fast_graph", "lms/torch_fast"):
        from lightmedseg.inference.backends import load_backend
        from lightmedseg.inference.conversion import OPENVINO_GRAPH_ENV

        if name == "lms/openvino_fast_graph":
            os.environ[OPENVINO_GRAPH_ENV] = "fast"
        loaded = load_backend(path, backend="torch" if name == "lms/torch_fast" else "auto", device="cpu")
        fn, desc = loaded.forward_fn, loaded.description
    elif name == "lms/openvino_plain":
        fn = _openvino_fn(model, "auto")
    elif name == "lms/torch_eager":
        fn = model
    elif name == "unet/openvino":
        fn = _openvino_fn(_unet(), "auto")
    elif name == "unet/torch_eager":
        fn = _unet()
    else:
        raise ValueError(name)
    with torch.inference_mode():
        out = fn(x)
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    agree = float((out.argmax(1) == reference).float().mean()) if reference is not None else None
    return {"median_s": statistics.median(times), "min_s": min(times), "first_call_s": first, "agreement": agree,
            "backend": desc}


def run_readings(threads: int, repeats: int) -> dict:
    """Both readings of Section 3.6 (and the UNet) on OpenVINO, plain module, precision auto: one process,
    interleaved; each LightMedSeg row with its argmax agreement against its own fp32 reference forward."""
    import torch

    from lightmedseg.config import load_config
    from lightmedseg.model.factory import build_model

    torch.set_num_threads(threads)
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))
    fns, agreement = {}, {}
    for final in (False, True):
        torch.manual_seed(0)
        model = build_model(load_config("brats", overrides=[f"model.final_transposed_conv={str(final).lower()}"])).eval()
        name = f"lms/openvino_plain{'_final_transposed_conv' if final else ''}"
        fns[name] = _openvino_fn(model, "auto")
        with torch.inference_mode():
            agreement[name] = float((fns[name](x).argmax(1) == model(x).argmax(1)).float().mean())
    fns["unet/openvino"] = _openvino_fn(_unet(), "auto")
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm-up
            fn(x)
        for _ in range(repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["lms/openvino_plain"]
    for name in fns:
        print(f"  {name:42s} {med[name]:.3f} s (min {min(times[name]):.3f})  x{med[name] / base:.3f} of the literal reading"
              + (f"  agreement {100 * agreement[name]:.2f}%" if name in agreement else ""), flush=True)
    return {"threads": threads, "repeats": repeats, "shape": list(SHAPE), "median_s": med, "times_s": times,
            "agreement": agreement, "final_over_literal": med["lms/openvino_plain_final_transposed_conv"] / base}


def run_predict(threads: int, repeats: int, overrides: list[str]) -> dict[str, dict]:
    results = {}
    for name in PREDICT:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, __file__, "--predict-worker", name, "--threads", str(threads),
                               "--repeats", str(repeats), *(f"--set={o}" for o in overrides)],
                              capture_output=True, text=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-1500:]}", file=sys.stderr)
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"  {name:22s} {r['median_s']:.3f} s (min {r['min_s']:.3f})"
              + (f"  agreement {100 * r['agreement']:.2f}%" if r["agreement"] is not None else "")
              + (f"  [{r['backend']}]" if r["backend"] else ""), flush=True)
    return results


TRAIN_AMPS = ("none", "bf16")  # fp32 and bf16 autocast rows of the training table, timed interleaved in one process


def run_train(threads: int, steps: int, preset: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train_step.py"), "--threads", str(threads),
                           "--steps", str(steps), "--amp", *TRAIN_AMPS, "--preset", preset],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    med = out["s_per_step_median"]
    for amp in TRAIN_AMPS:
        print(f"  {threads} thread(s), amp={amp}: LightMedSeg {med[f'lightmedseg_fast_{amp}']:.2f} s, "
              f"UNet {med[f'unet_{amp}']:.2f} s, ratio {out['lightmedseg_over_unet'][f'{amp}/{amp}']:.2f}", flush=True)
    return out


def section(predict: dict, train: list[dict], threads: int, repeats: int, when: str, cpu: str,
            overrides: list[str], train_preset: str) -> str:
    rerun = " ".join([RERUN, *(f"--set {o}" for o in overrides),
                      *([f"--train-preset {train_preset}"] if train_preset != "acdc" else [])])
    lines = [f"Measured {when} on {cpu}; machine otherwise idle. Rerun: `{rerun}`.", ""]
    if predict:
        bar = predict.get("unet/openvino", {}).get("median_s")
        lines += [f"Prediction, {' x '.join(map(str, SHAPE))}, {threads} threads, each configuration in its own process, "
                  f"median of {repeats} after one warm-up call:", "",
                  "| configuration | s | vs UNet on OpenVINO | argmax agreement with fp32 reference |", "|---|---:|---:|---:|"]
        for name, r in predict.items():
            ratio = f"{r['median_s'] / bar:.2f}x" if bar else "-"
            agree = f"{100 * r['agreement']:.2f}%" if r["agreement"] is not None else "-"
            lines.append(f"| {PREDICT[name]} | {r['median_s']:.3f} | {ratio} | {agree} |")
        lines.append("")
    if train:
        t0 = train[0]
        lines += [f"Training step, `{t0['preset']}` network (fast path) vs UNet with the same strides, batch "
                  f"{t0['batch']} x 1 x {' x '.join(map(str, t0['size']))}, all rows of one thread count interleaved "
                  "in one process:", "",
                  "| threads | precision | LightMedSeg s | UNet s | LightMedSeg / UNet (same precision) | "
                  "LightMedSeg / fastest UNet |", "|---:|---|---:|---:|---:|---:|"]
        for t in train:
            med = t["s_per_step_median"]
            best = min(med[f"unet_{a}"] for a in TRAIN_AMPS)
            for amp in TRAIN_AMPS:
                lms = med[f"lightmedseg_fast_{amp}"]
                lines.append(f"| {t['threads']} | {'fp32' if amp == 'none' else 'bf16 autocast'} | {lms:.2f} | "
                             f"{med[f'unet_{amp}']:.2f} | {t['lightmedseg_over_unet'][f'{amp}/{amp}']:.2f}x | "
                             f"{lms / best:.2f}x |")
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc:
        doc += f"\n{START}\n{END}\n"
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}{END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predict-worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help="threads for prediction (default 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per model and thread count")
    ap.add_argument("--only", choices=("predict", "train", "readings"),
                    help="one table; 'readings': the two readings of Section 3.6 on OpenVINO, interleaved")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override the LightMedSeg network of the prediction table (brats preset), e.g. "
                         "model.final_transposed_conv=true; repeatable")
    ap.add_argument("--train-preset", default="acdc", help="preset of the training table's network (default acdc)")
    ap.add_argument("--write-doc", action="store_true", help=f"replace the section of {DOC.name} between its markers")
    args = ap.parse_args()
    if args.predict_worker:
        print(json.dumps(predict_worker(args.predict_worker, args.threads, args.repeats, args.overrides)))
        return 0
    when, cpu = dt.date.today().isoformat(), cpu_name()
    print(f"{when}, {cpu}")
    if args.only == "readings":
        print(f"the two readings of Section 3.6, OpenVINO, {args.threads} thread(s), interleaved in one process:")
        print(json.dumps(run_readings(args.threads, args.repeats)))
        return 0
    predict, train = {}, []
    if args.only in (None, "predict"):
        print(f"prediction, {args.threads} threads:")
        predict = run_predict(args.threads, args.repeats, args.overrides)
    if args.only in (None, "train"):
        print("training step:")
        train = [run_train(t, args.steps, args.train_preset) for t in (1, 2)]
    text = section(predict, train, args.threads, args.repeats, when, cpu, args.overrides, args.train_preset)
    print(text)
    if args.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
