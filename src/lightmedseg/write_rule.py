"""The one rule for every file lightmedseg writes (outputs, sidecars, reports, plots, profiles, split files, runs).

1. **Never into a dataset.** No file is written inside a dataset folder (one holding ``dataset.json`` or
   ``imagesTr``, at any level above the target) nor inside a folder given as input: a prediction can never
   pass for a reference label, a plot never replaces an image. ``synth`` / ``convert`` write whole datasets
   through :func:`lightmedseg.data.layout.staged_output` instead.
2. **Never replace a file the tool did not write** unless the user says so (``--overwrite``). A file the
   tool recognises as its own (``ours``) with the same content is left alone; one with other content is
   refused like a user's file.
3. **Atomic.** Every file is written through :func:`lightmedseg.io_utils.atomic_path` (a uniquely named
   temporary beside it, renamed on success), so a failure leaves nothing half-written; an empty (0-byte)
   file left by anything else counts as not written (:func:`is_complete`), so a rerun redoes it rather than
   skipping it as done. A failed write names the user's file, not the temporary.

Commands call :func:`check_output_file` (a single file: split, plot, profile, sidecars),
:func:`check_output_folder` (a folder of outputs: predict, train's run folder) before any work, and
:func:`write_text_checked` for small text sidecars whose content decides whether they are ours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

DATASET_MARKERS: tuple[str, ...] = ("dataset.json", "imagesTr")


class OutputRefused(ValueError):
    """A write the rule forbids; the message names the file, the reason and what to do instead."""


def dataset_folder_of(path: str | os.PathLike) -> Path | None:
    """The dataset folder at or above ``path`` (links resolved), or None when ``path`` lies in no dataset."""
    p = Path(path).resolve()
    for folder in (p, *p.parents):
        if (folder / "dataset.json").is_file() or (folder / "imagesTr").is_dir():
            return folder
    return None


def check_not_in_dataset(target: str | os.PathLike, what: str = "output") -> None:
    """Refuse ``target`` (file or folder) inside a dataset folder."""
    ds = dataset_folder_of(target)
    if ds is not None:
        raise OutputRefused(f"{target}: {what} must not be written inside the dataset folder {ds} "
                            "(it would mix with or replace the dataset's own files); choose a folder outside it")


def check_not_inside(target: str | os.PathLike, folders: Iterable[str | os.PathLike], what: str = "output") -> None:
    """Refuse ``target`` inside any of ``folders`` (the input folders of the command), links resolved."""
    t = Path(target).resolve()
    for folder in folders:
        f = Path(folder).resolve()
        if t == f or f in t.parents:
            raise OutputRefused(f"{target}: {what} must not be written inside the input folder {folder}; "
                                "choose a folder outside it")


def is_complete(path: str | os.PathLike) -> bool:
    """True for a non-empty regular file: an empty one was left by a failed writer and is redone, not skipped."""
    p = Path(path)
    try:
        return p.is_file() and p.stat().st_size > 0
    except OSError:
        return False


def check_output_file(target: str | os.PathLike, overwrite: bool = False, what: str = "output",
                      ours: Callable[[Path], bool] | None = None, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse to write ``target`` when the rule forbids it (see the module docstring); nothing is written.

    ``ours(path)`` says whether an existing file was written by this tool for this purpose (e.g. a run's own
    ``curves.png``); such a file is replaced without ``--overwrite``. An empty file is always replaced.
    """
    target = Path(target)
    check_not_in_dataset(target, what)
    check_not_inside(target, inputs, what)
    if target.is_dir():
        raise OutputRefused(f"{target}: is a folder; the {what} must be a file name")
    if target.exists() and is_complete(target) and not overwrite and not (ours is not None and ours(target)):
        raise OutputRefused(f"{target}: exists and lightmedseg did not write it; pass --overwrite to replace it, "
                            "or choose another name")


def check_output_folder(folder: str | os.PathLike, what: str = "output folder",
                        inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output folder inside a dataset or an input folder (existing files are each checked later)."""
    check_not_in_dataset(folder, what)
    check_not_inside(folder, inputs, what)


def text_differs(target: str | os.PathLike, text: str) -> bool:
    """True when ``target`` exists, is complete and holds something other than ``text``."""
    p = Path(target)
    if not is_complete(p):
        return False
    try:
        return p.read_text() != text
    except (OSError, UnicodeDecodeError):
        return True


def check_text_file(target: str | os.PathLike, text: str, overwrite: bool = False, what: str = "file") -> None:
    """Refuse (unless ``overwrite``) an existing ``target`` holding other content than ``text``: not ours."""
    if text_differs(target, text) and not overwrite:
        raise OutputRefused(f"{target}: exists with other content than the {what} this run writes (a file of "
                            "yours, or another run's); pass --overwrite to replace it, or choose another output folder")


def write_text_checked(target: str | os.PathLike, text: str, overwrite: bool = False, what: str = "file") -> bool:
    """Write ``text`` to ``target`` atomically unless it already holds exactly that; returns whether it wrote.

    A different existing file is refused without ``overwrite`` (it may be the user's own ``labels.json``).
    """
    from lightmedseg.io_utils import write_text_atomic

    check_text_file(target, text, overwrite, what)
    if is_complete(target) and not text_differs(target, text):
        return False
    write_text_atomic(target, text)
    return True
