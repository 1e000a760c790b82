"""The canonical on-disk layout: nnU-Net v2 raw datasets.

::

    DATASET/
      dataset.json            channel_names, labels, numTraining, file_ending (+ our extra keys)
      imagesTr/{case}_{XXXX}.nii.gz   one file per channel XXXX = 0000, 0001, ...
      labelsTr/{case}.nii.gz
      imagesTs/{case}_{XXXX}.nii.gz   optional, unlabelled

Extra keys we add (nnU-Net ignores unknown keys): ``label_convention`` (see
:mod:`lightmedseg.data.labels`), ``source_format`` and free-text notes such as ``spacing_note``.
Writers go through :func:`staged_output` so a failed conversion never leaves a partial folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from lightmedseg.data import labels as L
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import (ImageGeometry, default_file_mode, geometry_difference, read_image_channels, read_label,
                                  write_label, write_volume)
from lightmedseg.io_utils import check_writable, is_inside, read_json_object, write_json_atomic

FILE_ENDING = ".nii.gz"
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_CASE_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})(?P<ext>\.nii\.gz|\.nii)$")


def load_dataset_json(dataset_dir: str | os.PathLike) -> dict:
    """Read and check ``dataset.json`` of a canonical dataset (required keys, labels, channel order)."""
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; {dataset_dir} is not a dataset in the canonical (nnU-Net v2 raw) layout")
    meta = read_json_object(path, "the nnU-Net v2 dataset keys", DataError)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise DataError(f"{path}: missing required keys {missing} (nnU-Net v2 needs {list(REQUIRED_KEYS)})")
    ch = meta["channel_names"]
    if not isinstance(ch, dict) or not ch or sorted(ch, key=int) != [str(i) for i in range(len(ch))]:
        raise DataError(f"{path}: channel_names must map '0', '1', ... to modality names, got {ch!r}")
    if meta["file_ending"] not in (".nii.gz", ".nii"):
        raise DataError(f"{path}: file_ending {meta['file_ending']!r} is not supported; expected .nii.gz or .nii")
    try:
        L.label_values(meta)
        L.check_channel_order(meta)
    except DataError as exc:
        raise DataError(f"{path}: {str(exc).removeprefix('dataset.json: ')}") from None
    return meta


def num_channels(meta: Mapping) -> int:
    """Number of image channels declared in dataset.json."""
    return len(meta["channel_names"])


def _scan(folder: Path, ending: str) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    if not folder.is_dir():
        return found
    for f in folder.iterdir():
        m = _CASE_RE.match(f.name)
        if m and m["ext"] == ending:
            found.setdefault(m["case"], set()).add(int(m["ch"]))
    return found


def list_cases(dataset_dir: str | os.PathLike, subset: str = "Tr") -> list[str]:
    """Sorted case IDs in ``images{subset}``; every case must have every declared channel."""
    root = Path(dataset_dir)
    meta = load_dataset_json(root)
    n = num_channels(meta)
    found = _scan(root / f"images{subset}", meta["file_ending"])
    for case, chans in sorted(found.items()):
        if chans != set(range(n)):
            missing = sorted(set(range(n)) - chans)
            extra = sorted(chans - set(range(n)))
            ending = meta["file_ending"]
            problems = ([f"is missing channel file(s) {[f'{case}_{c:04d}{ending}' for c in missing]}"] if missing else []) + (
                [f"has extra channel file(s) {[f'{case}_{c:04d}{ending}' for c in extra]}"] if extra else [])
            problem = " and ".join(problems)
            raise DataError(
                f"{root / ('images' + subset)}: case {case!r} {problem}; {root / 'dataset.json'} declares "
                f"{n} channel(s) ({case}_0000 ... {case}_{n - 1:04d})"
            )
    return sorted(found)


def case_files(
    dataset_dir: str | os.PathLike, case_id: str, subset: str = "Tr"
) -> tuple[list[Path], Path | None]:
    """(image files in channel order, label file or None) of one case."""
    root = Path(dataset_dir)
    meta = load_dataset_json(root)
    ending = meta["file_ending"]
    images = [root / f"images{subset}" / f"{case_id}_{c:04d}{ending}" for c in range(num_channels(meta))]
    for f in images:
        if not f.is_file():
            raise DataError(f"{f}: missing image channel of case {case_id!r}")
    label = root / f"labels{subset}" / f"{case_id}{ending}"
    return images, (label if label.is_file() else None)


def patient_id(case_id: str) -> str:
    """Group key of a case: ``patient001_frame01`` -> ``patient001``; other IDs are their own group."""
    m = re.match(r"^(.*?)_frame\d+$", case_id)
    return m.group(1) if m else case_id


def validate_dataset(dataset_dir: str | os.PathLike, read_data: bool = True) -> dict:
    """Check a canonical dataset completely; raise DataError naming the first bad file.

    Structure: dataset.json, every case has all channels and a label, numTraining agrees.
    With ``read_data``: every file is readable 3D, finite, channels and label share shape and affine,
    label values are within the declared set. Returns the dataset.json contents.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    meta = load_dataset_json(root)
    cases = list_cases(root, "Tr")
    if not cases:
        raise DataError(f"{root / 'imagesTr'}: no training cases found (expected files like CASE_0000{meta['file_ending']})")
    label_dir = root / "labelsTr"
    label_cases = {p.name[: -len(meta["file_ending"])] for p in label_dir.glob(f"*{meta['file_ending']}")}
    if orphans := sorted(label_cases - set(cases)):
        raise DataError(f"{label_dir}: labels without images: {orphans[:5]}")
    if meta["numTraining"] != len(cases):
        raise DataError(f"{root / 'dataset.json'}: numTraining is {meta['numTraining']} but imagesTr holds {len(cases)} cases")
    values = set(L.label_values(meta))
    for case in cases:
        images, label = case_files(root, case, "Tr")
        if label is None:
            raise DataError(f"{label_dir / (case + meta['file_ending'])}: label of training case {case!r} is missing")
        if read_data:
            _, geom = read_image_channels(images)
            lab, lgeom = read_label(label)
            if not lgeom.matches(geom):
                raise DataError(f"{label}: label geometry differs from its images {images[0]} ({geometry_difference(lgeom, geom)})")
            extra = sorted(set(np.unique(lab).tolist()) - values)
            if extra:
                raise DataError(f"{label}: label values {extra} are outside the declared set {sorted(values)}")
    for case in list_cases(root, "Ts") if (root / "imagesTs").is_dir() else []:
        if read_data:
            read_image_channels(case_files(root, case, "Ts")[0])
    return meta


class DatasetWriter:
    """Writes cases into a (staging) folder in the canonical layout, checking each case as it goes."""

    def __init__(self, root: str | os.PathLike, channel_names: list[str], labels: Mapping[str, int],
                 convention: str = "generic"):
        self.root = Path(root)
        self.channel_names = list(channel_names)
        self.labels = dict(labels)
        self.convention = convention
        self.values = set(self.labels.values())
        self.cases: dict[str, list[str]] = {"Tr": [], "Ts": []}
        self.written: list[Path] = []  # every file written, for the manifest (see :func:`check_replaceable`)

    def write_case(self, case_id: str, image: np.ndarray, label: np.ndarray | None,
                   geometry: ImageGeometry, subset: str = "Tr", source: str = "") -> None:
        """Write one case: ``image`` (C, Z, Y, X) float, ``label`` (Z, Y, X) canonical values or None."""
        where = source or case_id
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", case_id):
            raise DataError(f"{where}: case ID {case_id!r} has characters outside [A-Za-z0-9_.-]")
        if case_id in self.cases[subset]:
            raise DataError(f"{where}: duplicate case ID {case_id!r}")
        if image.ndim != 4 or image.shape[0] != len(self.channel_names):
            raise DataError(f"{where}: expected {len(self.channel_names)} channels (C, Z, Y, X), got shape {image.shape}")
        if tuple(image.shape[1:]) != tuple(geometry.shape):
            raise DataError(f"{where}: image shape {image.shape[1:]} differs from its geometry {geometry.shape}")
        if not np.all(np.isfinite(image)):
            raise DataError(f"{where}: image has NaN or Inf voxels")
        if subset == "Tr" and label is None:
            raise DataError(f"{where}: training case {case_id!r} has no label")
        if label is not None:
            if label.shape != image.shape[1:]:
                raise DataError(f"{where}: label shape {label.shape} differs from image shape {image.shape[1:]}")
            extra = sorted(set(np.unique(label).tolist()) - self.values)
            if extra:
                raise DataError(f"{where}: label values {extra} are outside the declared set {sorted(self.values)}")
        for c in range(image.shape[0]):
            write_volume(self.root / f"images{subset}" / f"{case_id}_{c:04d}{FILE_ENDING}", image[c], geometry)
            self.written.append(self.root / f"images{subset}" / f"{case_id}_{c:04d}{FILE_ENDING}")
        if label is not None:
            write_label(self.root / f"labels{subset}" / f"{case_id}{FILE_ENDING}", label, geometry)
            self.written.append(self.root / f"labels{subset}" / f"{case_id}{FILE_ENDING}")
        for d in (self.root / f"images{subset}", self.root / f"labels{subset}"):
            if d.is_dir():
                os.chmod(d, default_file_mode() | 0o111)
        self.cases[subset].append(case_id)

    def finish(self, name: str, source_format: str, **extra) -> dict:
        """Write dataset.json; refuse an empty dataset."""
        if not self.cases["Tr"]:
            raise DataError(f"{name}: no training cases were found to convert")
        meta = {
            "name": name,
            "channel_names": {str(i): n for i, n in enumerate(self.channel_names)},
            "labels": self.labels,
            "numTraining": len(self.cases["Tr"]),
            "file_ending": FILE_ENDING,
            "label_convention": self.convention,
            "source_format": source_format,
            **extra,
        }
        write_json_atomic(self.root / "dataset.json", meta)
        os.chmod(self.root / "dataset.json", default_file_mode())
        write_manifest(self.root, [*self.written, self.root / "dataset.json"])
        return meta


MANIFEST = ".lightmedseg-files.json"  # the files a DatasetWriter wrote: what --overwrite may replace


def _file_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def write_manifest(root: Path, files: list[Path]) -> None:
    """Record size and modification time of every file written into ``root``, so that ``--overwrite`` later
    tells them from files a user added or edited by hand (:func:`check_replaceable`)."""
    write_json_atomic(root / MANIFEST, {"written_by": "lightmedseg", "files": {
        f.relative_to(root).as_posix(): _file_stamp(f) for f in files}})


DATASET_ENTRIES = ("dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs")


def check_replaceable(dst: Path) -> None:
    """Refuse to replace ``dst`` unless it is a dataset this tool wrote and holds nothing else.

    ``--overwrite`` must never delete a user's file: ``dst`` needs the manifest :class:`DatasetWriter` writes
    (:data:`MANIFEST`), and every file below ``dst`` must be listed there with the size and modification time
    it had when written; a file added (e.g. a hand-made ``labelsTr/case.nii.gz``), edited or replaced by hand,
    a folder or a link is named and refused.
    """
    try:
        manifest = read_json_object(dst / MANIFEST, "the files lightmedseg wrote", DataError)
        written = manifest["files"] if isinstance(manifest.get("files"), dict) else None
    except DataError:
        written = None
    if written is None or not (dst / "dataset.json").is_file():
        raise DataError(
            f"{dst}: --overwrite replaces only a dataset written by lightmedseg (with its list of written files "
            f"{MANIFEST}), and this folder is not one; remove it yourself or choose another output folder"
        )
    foreign = []
    for p in sorted(dst.rglob("*")):
        rel = p.relative_to(dst).as_posix()
        if rel == MANIFEST or (p.is_dir() and not p.is_symlink() and rel in DATASET_ENTRIES):
            continue
        if p.is_symlink() or not p.is_file() or written.get(rel) != _file_stamp(p):
            foreign.append(rel + ("/" if p.is_dir() and not p.is_symlink() else ""))
    if foreign:
        raise DataError(
            f"{dst}: --overwrite would delete {foreign[:5]}{' ...' if len(foreign) > 5 else ''}, which "
            "lightmedseg did not write (added or changed by hand); move them out or choose another output folder"
        )


@contextmanager
def staged_output(dst: str | os.PathLike, overwrite: bool = False,
                  src: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; on success it replaces ``dst``, on failure it is removed.

    Refuses an existing non-empty ``dst`` unless ``overwrite``, and even then unless it holds only a
    dataset this tool wrote (:func:`check_replaceable`); refuses ``dst`` inside ``src`` (or the reverse),
    so the input is never modified and no user folder is deleted.
    """
    dst = Path(dst)
    if src is not None and (is_inside(dst, src) or is_inside(src, dst)):
        raise DataError(f"{dst}: output folder must not be the input folder {src}, lie inside it or contain it")
    if dst.is_symlink():
        raise DataError(f"{dst}: is a symbolic link; give the real folder ({dst.resolve()}) or a new name")
    if dst.exists():
        if not dst.is_dir():
            raise DataError(f"{dst}: exists and is not a folder")
        if any(dst.iterdir()):
            if not overwrite:
                raise DataError(f"{dst}: exists and is not empty; pass --overwrite to replace it")
            check_replaceable(dst)
    check_writable(dst.parent, "parent of the output folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    os.chmod(tmp, default_file_mode() | 0o111)  # mkdtemp makes 0700 folders
    try:
        yield tmp
        old = None
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / dst.name)
        os.replace(tmp, dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
