"""Run an nnU-Net v2 command (``train`` or ``predict``) with torch on N threads (default 1) on the CPU.

    NNUNET_TORCH_THREADS=1 /work/venv-nnunet/bin/python one_thread.py predict -i IN -o OUT -d 27 ... -device cpu

Why: with ``-device cpu`` both ``nnUNetv2_train`` and ``nnUNetv2_predict`` call
``torch.set_num_threads(multiprocessing.cpu_count())``, i.e. every core, and this machine's cores are shared
with other training jobs. This wrapper makes ``multiprocessing.cpu_count`` answer N, then hands the remaining
arguments to nnU-Net's own entry point unchanged.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

ENTRY_POINTS = {
    "train": ("nnunetv2.run.run_training", "run_training_entry"),
    "predict": ("nnunetv2.inference.predict_from_raw_data", "predict_entry_point"),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ENTRY_POINTS:
        sys.exit(f"usage: one_thread.py {{{','.join(ENTRY_POINTS)}}} [nnU-Net arguments]")
    threads = int(os.environ.get("NNUNET_TORCH_THREADS", "1"))
    if threads < 1:
        sys.exit(f"NNUNET_TORCH_THREADS must be >= 1, got {threads}")
    multiprocessing.cpu_count = lambda: threads
    module_name, function = ENTRY_POINTS[sys.argv[1]]
    sys.argv = [f"nnUNetv2_{sys.argv[1]}"] + sys.argv[2:]
    module = __import__(module_name, fromlist=[function])
    getattr(module, function)()


if __name__ == "__main__":
    main()
