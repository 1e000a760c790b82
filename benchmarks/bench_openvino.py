"""CPU inference engines for LightMedSeg (issue 12): PyTorch eager / fast path, ONNX Runtime, OpenVINO.

Each engine family runs in **its own worker process** (an OpenVINO thread pool in the same process was
measured to slow torch's eager forward from 1.86 s to 3.12 s, issue 12). The workers are started once and
kept alive; the parent then asks them in turn for one timed call of each of their configurations, round
after round, so the families are measured interleaved (load from other jobs hits them alike) but never
concurrently. The table reports medians, ratios to the plain eager fp32 forward, and the argmax agreement
of each configuration with it on the same input (outputs are passed through .npy files). MONAI's UNet
(eager fp32, bf16 autocast, OpenVINO bf16) is the bar.

Tasks: ``single`` = one 1x4x128^3 BraTS-like window; ``swbatch`` = a sliding-window batch of four
1x16x160x160 ACDC-like windows (4x1x16x160x160). Random weights (seeded), 4 classes.

    .venv/bin/python benchmarks/bench_openvino.py                  # 3 rounds, writes benchmarks/results/openvino.json
    .venv/bin/python benchmarks/bench_openvino.py --quick   # small shapes, 1 round, nothing written
    .venv/bin/python benchmarks/bench_openvino.py --only-e2e   # `lightmedseg predict` per backend, one real case
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "openvino.json"
RERUN = ".venv/bin/python benchmarks/bench_openvino.py"

TASKS = {"single": (1, 4, 128, 128, 128), "swbatch": (4, 1, 16, 160, 160)}
QUICK_TASKS = {"single": (1, 4, 64, 64, 64), "swbatch": (4, 1, 16, 64, 64)}  # --quick: a smoke run
BASELINE = "torch/plain_fp32"
# family -> configuration -> description
FAMILIES: dict[str, dict[str, str]] = {
    "torch": {
        "torch/plain_fp32": "plain eager fp32 (the reference forward, inference_mode)",
        "torch/fast_fp32": "hand-written fast path, fp32 (exact), channels-last",
        "torch/fast_bf16": "hand-written fast path, bf16 (the default before issue 12 on CPUs with native bf16)",
        "torch/unet_fp32": "MONAI UNet 16-256, 2 res units, eager fp32 (the bar)",
        "torch/unet_bf16": "MONAI UNet, bf16 autocast, channels-last",
    },
    "onnxruntime": {
        "ort/fp32": "ONNX Runtime fp32 (legacy-exported ONNX of the plain module)",
    },
    "openvino": {
        "ov/f32": "OpenVINO f32, static window shape (predict --precision fp32)",
        "ov/bf16": "OpenVINO bf16, static window shape (predict default on CPUs with native bf16)",
        "ov/bf16_dynamic": "OpenVINO bf16, dynamic axes (one compile for every shape)",
        "ov/unet_bf16": "MONAI UNet on OpenVINO bf16, static window shape",
    },
}


def build_unet(in_channels: int):
    """The MONAI UNet of benchmarks/bench_cpu_speed.py (16-256 channels, 2 residual units), random weights."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=4, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2).eval()


def build_model(in_channels: int):
    import torch

    from lightmedseg.model import LightMedSeg

    torch.manual_seed(0)
    return LightMedSeg(in_channels=in_channels, num_classes=4).eval()


def model_config(in_channels: int) -> dict:
    """The minimal config the exporters need (they store it in the exported file)."""
    return {"model": {"in_channels": in_channels, "num_classes": 4}}


def build_family(family: str, in_channels: int) -> dict:
    """configuration -> callable(numpy array) -> numpy logits, all inside this process."""
    import numpy as np
    import torch

    model = build_model(in_channels)
    if family == "torch":
        from lightmedseg.fast import fast_forward

        unet = build_unet(in_channels)
        unet_cl = build_unet(in_channels).to(memory_format=torch.channels_last_3d)

        def unet_bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return unet_cl(x.contiguous(memory_format=torch.channels_last_3d)).float()

        fns = {"torch/plain_fp32": model, "torch/fast_fp32": fast_forward(model),
               "torch/fast_bf16": fast_forward(model, dtype=torch.bfloat16),
               "torch/unet_fp32": unet, "torch/unet_bf16": unet_bf16}

        def wrap(fn):
            def run(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return fn(torch.from_numpy(x)).float().numpy()
            return run
        return {k: wrap(v) for k, v in fns.items()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ov-"))
    if family == "onnxruntime":
        import onnxruntime as ort

        from lightmedseg.inference.export import export_onnx

        export_onnx(model, model_config(in_channels), tmp / "m.onnx", exporter="legacy")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(tmp / "m.onnx"), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return {"ort/fp32": lambda x: sess.run(None, {name: x})[0]}
    if family == "openvino":
        import openvino as ov

        from lightmedseg.inference.openvino_backend import StaticShapeForward, compile_properties
        from lightmedseg.inference.openvino_convert import convert_module

        ov_model, _ = convert_module(model, model_config(in_channels))
        core = ov.Core()
        out = {}
        for cfg, prec in (("ov/f32", "f32"), ("ov/bf16", "bf16")):  # what predict runs
            fn = StaticShapeForward(core, ov_model, compile_properties(prec), tmp)
            out[cfg] = lambda x, fn=fn: fn(torch.from_numpy(x)).numpy()
        request = core.compile_model(ov_model, "CPU", compile_properties("bf16")).create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data, copy=True)
        out["ov/bf16_dynamic"] = run
        unet_ov = ov.convert_model(build_unet(in_channels), example_input=torch.zeros(1, in_channels, 32, 32, 32))
        fn_unet = StaticShapeForward(core, unet_ov, compile_properties("bf16"), tmp)
        out["ov/unet_bf16"] = lambda x: fn_unet(torch.from_numpy(x)).numpy()
        return out
    raise ValueError(f"unknown family {family}")


def worker(family: str, threads: int, tasks: list[str], outdir: Path, shapes: dict) -> None:
    """Build the family's configurations for every task, warm up, then answer 'run TASK' lines on stdin.

    The answers go to the original stdout; anything the libraries print goes to stderr instead.
    """
    import numpy as np
    import torch

    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    torch.set_num_threads(threads)
    fns, inputs, first = {}, {}, {}
    for task in tasks:
        shape = shapes[task]
        inputs[task] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        t0 = time.perf_counter()
        fns[task] = build_family(family, shape[1])
        first[f"{task}/build"] = time.perf_counter() - t0
        for name, fn in fns[task].items():
            t0 = time.perf_counter()
            out = fn(inputs[task])  # warm-up
            first[f"{task}/{name}"] = time.perf_counter() - t0
            np.save(outdir / f"{task}__{name.replace('/', '_')}.npy", out.argmax(1).astype(np.uint8))
    print(json.dumps({"ready": first}), file=reply, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        task = cmd[1]
        times = {}
        for name, fn in fns[task].items():
            t0 = time.perf_counter()
            fn(inputs[task])
            times[name] = time.perf_counter() - t0
        print(json.dumps(times), file=reply, flush=True)


def cache_worker(model: str, cache: Path) -> None:
    """Time predict's model loading (``load_backend``, OpenVINO) in this fresh process with cache folder ``cache``."""
    os.environ["LIGHTMEDSEG_CACHE_DIR"] = str(cache)
    import torch

    from lightmedseg.inference.backends import load_backend

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    loaded = load_backend(model, backend="openvino")
    print(json.dumps({"seconds": time.perf_counter() - t0, "description": loaded.description}))


def cache_timing(model: str) -> dict:
    """Model loading of predict with an empty cache (convert + compile), then with the cache (fresh processes)."""
    cache = Path(tempfile.mkdtemp(prefix="bench-ov-cache-"))
    out = {"model": model}
    for run in ("cold", "warm"):
        proc = subprocess.run([sys.executable, __file__, "--cache-worker", model, "--outdir", str(cache)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out[run] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"load {model} ({run} cache): {out[run]['seconds']:.2f} s  [{out[run]['description']}]", flush=True)
    return out


E2E_CASE = ROOT / ".." / "shared" / "data" / "brats2015-sample" / "validation" / "brats_2013_pat0003_1"
E2E_RUNS = (("torch", ["--backend", "torch"]), ("auto, empty cache", []), ("auto, cached IR", []))


def e2e_timing(case_dir: Path, threads: int) -> dict:
    """Wall time of ``lightmedseg predict`` (a fresh process each) on one real 240x240x155 case made 4-channel
    (T1c, FLAIR, T1c, FLAIR), with a seeded untrained 4-channel brats-preset model: --backend torch, then the
    default backend with an empty IR cache (conversion and compile included), then again with the cache."""
    import nibabel as nib
    import numpy as np

    from lightmedseg.checkpoint import save_model

    from lightmedseg.model.factory import build_model
    from lightmedseg.config import load_config

    work = Path(tempfile.mkdtemp(prefix="bench-ov-e2e-"))
    (work / "in").mkdir()
    for c, name in enumerate(["T1c", "Flair", "T1c", "Flair"]):
        img = nib.load(str(case_dir / f"{name}_subtrMeanDivStd.nii.gz"))
        nib.save(img, str(work / "in" / f"case_{c:04d}.nii.gz"))
    import torch

    torch.manual_seed(0)
    cfg = load_config("brats", overrides=["model.in_channels=4"])
    save_model(work / "run" / "model_best.safetensors", build_model(cfg), cfg)
    env = {**os.environ, "LIGHTMEDSEG_CACHE_DIR": str(work / "cache"), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out: dict = {"case": str(case_dir.resolve().name), "shape": list(nib.load(str(work / "in" / "case_0000.nii.gz")).shape)}
    labels = {}
    for i, (name, extra) in enumerate(E2E_RUNS):
        target = work / f"out{i}.nii.gz"
        cmd = [sys.executable, "-m", "lightmedseg.cli.main", "predict", "-i", str(work / "in"), "-o", str(target),
               "-m", str(work / "run"), "--quiet", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        log = [ln for ln in proc.stderr.splitlines() if "roi" in ln][:1]
        labels[name] = np.asarray(nib.load(str(target)).dataobj)
        out[name] = {"seconds": seconds, "log": log[0] if log else ""}
        print(f"predict {name}: {seconds:.1f} s  [{out[name]['log'][:160]}]", flush=True)
    for name in E2E_RUNS[1:]:
        out[name[0]]["label_agreement_vs_torch"] = float(np.mean(labels[name[0]] == labels["torch"]))
        out[name[0]]["speedup_vs_torch"] = out["torch"]["seconds"] / out[name[0]]["seconds"]
    return out


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["cpu"] = re.search(r"Model name:\s*(.*)", out).group(1).strip()
        flags = re.search(r"Flags:\s*(.*)", out).group(1).split()
        info["bf16"] = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    except (OSError, AttributeError):
        info["cpu"] = platform.processor() or "unknown"
    for mod in ("openvino", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info


def load() -> dict:
    """Load average and the busiest other processes, recorded with every measurement."""
    top = subprocess.run(["top", "-bn1", "-w", "200"], capture_output=True, text=True).stdout.splitlines()
    procs = [ln for ln in top[7:12] if ln.strip()]
    return {"loadavg": os.getloadavg(), "top": procs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", default="single,swbatch")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="small shapes, one round, results not written")
    ap.add_argument("--cache-model", default="acdc",
                    help="model whose predict-time loading is timed with an empty and a filled IR cache ('' to skip)")
    ap.add_argument("--e2e", action="store_true",
                    help=f"also time `lightmedseg predict` end to end on {E2E_CASE.name} (../shared/data)")
    ap.add_argument("--only-e2e", action="store_true", help="only the end-to-end predict timing")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cache-worker", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    shapes = QUICK_TASKS if args.quick else TASKS
    if args.cache_worker:
        cache_worker(args.cache_worker, args.outdir)
        return
    if args.worker:
        worker(args.worker, args.threads, tasks, args.outdir, shapes)
        return
    if args.quick:
        args.rounds = 1
    import numpy as np

    if args.only_e2e:
        res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "threads": args.threads, "load_before": load(), "e2e": e2e_timing(E2E_CASE, args.threads)}
        res["load_after"] = load()
        res["command"] = f"{RERUN} --only-e2e --threads {args.threads}"
        path = args.out.with_name(args.out.stem + "_e2e.json")
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {path}")
        return
    families = args.families.split(",")
    outdir = Path(tempfile.mkdtemp(prefix="bench-ov-out-"))
    started = dt.datetime.now(dt.timezone.utc)
    load_before = load()
    procs, ready = {}, {}
    for fam in families:  # one at a time, so no build overlaps another family's work
        p = subprocess.Popen([sys.executable, __file__, "--worker", fam, "--threads", str(args.threads),
                              "--tasks", args.tasks, "--outdir", str(outdir)] + (["--quick"] if args.quick else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {fam} failed (see its stderr above)")
        ready[fam] = json.loads(line)["ready"]
        procs[fam] = p
        print(f"built {fam}: " + ", ".join(f"{k} {v:.2f}s" for k, v in ready[fam].items()), flush=True)
    times: dict[str, dict[str, list[float]]] = {t: {} for t in tasks}
    for r in range(args.rounds):
        for task in tasks:
            for fam, p in procs.items():
                p.stdin.write(f"run {task}\n")
                p.stdin.flush()
                for name, s in json.loads(p.stdout.readline()).items():
                    times[task].setdefault(name, []).append(s)
        print(f"round {r + 1}/{args.rounds}: " + "; ".join(
            f"{t} " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in times[t].items()) for t in tasks), flush=True)
    for p in procs.values():
        p.stdin.write("quit\n")
        p.stdin.close()
        p.wait()
    result = {"date": started.isoformat(timespec="seconds"), "machine": machine(), "threads": args.threads,
              "rounds": args.rounds, "load_before": load_before, "load_after": load(),
              "command": f"{RERUN} --rounds {args.rounds} --threads {args.threads} --tasks {args.tasks}",
              "tasks": {}}
    for task in tasks:
        base = statistics.median(times[task][BASELINE]) if BASELINE in times[task] else None
        ref_file = outdir / f"{task}__{BASELINE.replace('/', '_')}.npy"
        ref = np.load(ref_file) if ref_file.exists() else None
        rows = {}
        for fam in families:
            for name, desc in FAMILIES[fam].items():
                med = statistics.median(times[task][name])
                am = np.load(outdir / f"{task}__{name.replace('/', '_')}.npy")
                rows[name] = {"description": desc, "median_s": med, "times_s": times[task][name],
                              "x_plain": (base / med) if base else None,
                              "argmax_agreement": (float(np.mean(am == ref)) if ref is not None and "unet" not in name
                                                   else None),  # a UNet is another network: no agreement
                              "first_call_s": ready[fam][f"{task}/{name}"]}
        result["tasks"][task] = {"shape": shapes[task], "configs": rows}
        print(f"\n{task} {shapes[task]}  (median of {args.rounds}, {args.threads} threads)")
        for name, row in rows.items():
            ratio = f"{row['x_plain']:.2f}x" if row["x_plain"] else "-"
            agree = f"{100 * row['argmax_agreement']:.3f}%" if row["argmax_agreement"] is not None else "-"
            print(f"  {name:18s} {row['median_s']:8.3f} s  {ratio:>7s}  argmax agreement {agree}")
    if args.quick:
        return
    if args.cache_model:
        result["cache"] = cache_timing(args.cache_model)
    if args.e2e:
        result["e2e"] = e2e_timing(E2E_CASE, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
