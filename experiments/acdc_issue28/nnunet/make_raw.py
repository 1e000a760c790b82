"""Lay our converted ACDC (``/work/data/acdc``) out as nnU-Net v2's raw dataset Dataset027_ACDC, and write the
``splits_final.json`` that makes nnU-Net's fold 0 train on our 70 training patients and validate on our 10
validation patients (issue 28, item 3: the nnU-Net peer on the same data and split).

    python experiments/acdc_issue28/nnunet/make_raw.py --data /work/data/acdc --root /work/nnunet

Writes ``ROOT/raw/Dataset027_ACDC/{imagesTr,labelsTr,dataset.json,splits_final.json}`` (images and labels are
symbolic links: nothing is copied, and nothing is written into the repository) and a copy of the splits at
``ROOT/preprocessed/Dataset027_ACDC/splits_final.json``, where nnU-Net's trainer reads it. Only the training
and validation cases of our split are linked; the test patients are not in ``--data`` and are never used.
Standard library only, so it runs in nnU-Net's own virtual environment as in ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATASET_NAME = "Dataset027_ACDC"
SPLIT_FILE = Path(__file__).resolve().parents[3] / "src" / "lightmedseg" / "splits" / "acdc_nnformer.json"
CHANNEL_SUFFIX = "_0000"
FILE_ENDING = ".nii.gz"


def load_split(path: Path) -> tuple[list[str], list[str]]:
    """Our split's training and validation case IDs (the test list is ignored on purpose)."""
    split = json.loads(path.read_text())
    train, val = list(split["train"]), list(split["validation"])
    overlap = set(train) & set(val)
    if overlap:
        raise ValueError(f"split {path}: cases in both training and validation: {sorted(overlap)}")
    return train, val


def nnunet_dataset_json(source: dict, num_training: int) -> dict:
    """nnU-Net v2's dataset.json from ours: same channel names and labels, our file ending."""
    return {
        "name": DATASET_NAME,
        "channel_names": source["channel_names"],
        "labels": source["labels"],
        "numTraining": num_training,
        "file_ending": source.get("file_ending", FILE_ENDING),
        "description": "lightmedseg's converted ACDC (training + validation patients of acdc_nnformer), "
        "linked by experiments/acdc_issue28/nnunet/make_raw.py",
    }


def link(src: Path, dst: Path) -> None:
    """Symbolic link dst -> src, replacing a stale link; a missing source is an error."""
    if not src.is_file():
        raise FileNotFoundError(f"missing source file: {src}")
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(src.resolve())


def make_raw(data: Path, root: Path, split_path: Path = SPLIT_FILE) -> Path:
    """Build the raw folder and both copies of splits_final.json; return the raw dataset folder."""
    train, val = load_split(split_path)
    source = json.loads((data / "dataset.json").read_text())
    ending = source.get("file_ending", FILE_ENDING)
    raw = root / "raw" / DATASET_NAME
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    cases = train + val
    for case in cases:
        link(data / "imagesTr" / f"{case}{CHANNEL_SUFFIX}{ending}", raw / "imagesTr" / f"{case}{CHANNEL_SUFFIX}{ending}")
        link(data / "labelsTr" / f"{case}{ending}", raw / "labelsTr" / f"{case}{ending}")
    (raw / "dataset.json").write_text(json.dumps(nnunet_dataset_json(source, len(cases)), indent=2) + "\n")
    splits = json.dumps([{"train": sorted(train), "val": sorted(val)}], indent=2) + "\n"
    (raw / "splits_final.json").write_text(splits)
    pre = root / "preprocessed" / DATASET_NAME
    pre.mkdir(parents=True, exist_ok=True)
    (pre / "splits_final.json").write_text(splits)
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data/acdc"), help="our converted ACDC folder")
    parser.add_argument("--root", type=Path, default=Path("/work/nnunet"), help="nnU-Net's folders (outside the repo)")
    parser.add_argument("--split", type=Path, default=SPLIT_FILE, help="our split JSON (train/validation used)")
    args = parser.parse_args(argv)
    try:
        raw = make_raw(args.data, args.root, args.split)
    except (OSError, ValueError, KeyError) as exc:  # a missing file or folder, a malformed split or dataset.json
        print(f"make_raw: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    n = len(list((raw / "imagesTr").iterdir()))
    print(f"{raw}: {n} images linked; splits_final.json fold 0 = our train / validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
