"""Small file-system helpers shared by every pipeline stage: atomic writes, safe output folders."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash or exception leaves ``target`` untouched (either the old file or nothing), never half a file.
    ``suffix`` keeps writers that infer the format from the extension (e.g. ``.nii.gz``) happy. The file gets
    the mode a plain ``open()`` would give it (0666 minus the umask), not mkstemp's 0600, so shared models,
    run folders and reports stay readable by the users the umask allows. A temporary left by a killed
    writer is removed by :func:`remove_stale_temporaries`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=(suffix or ".tmp"), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def default_file_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (0o666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(target: str | os.PathLike, suffix: str = "") -> list[Path]:
    """Delete temporaries that :func:`atomic_path` left beside ``target`` when its writer was killed.

    Only names of the exact form ``.{target name}.XXXXXXXX{suffix}`` (mkstemp's 8 random characters) are
    touched, so a user's own hidden files are never removed. Returns the files removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}" + re.escape(suffix or ".tmp") + "$")
    removed = []
    for f in target.parent.iterdir():
        if pattern.match(f.name) and f.is_file() and not f.is_symlink():
            f.unlink()
            removed.append(f)
    return removed


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Raise ``PermissionError`` naming ``folder`` (or its nearest existing parent) when files cannot be made there.

    Called before any work, so a read-only destination is reported before inference or training runs.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder}: {what} cannot be created, {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{folder}: {what} is not writable (no permission to create files in {probe})")


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json_object(path: str | os.PathLike, expected: str, error: type[ValueError] = ValueError) -> dict:
    """Read a JSON file that must hold an object; ``error`` (a ValueError subclass) names the file and problem.

    Args:
        path: the JSON file.
        expected: what the object should hold, for the message (e.g. "a 'labels' mapping").
        error: the exception type to raise, so each pipeline stage keeps its own error class.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object with {expected}")
    return data


def json_plain(value: object) -> object:
    """``value`` in the form JSON and YAML round-trip to: tuples (also nested) as lists, mappings as dicts."""
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: json_plain(v) for k, v in value.items()}
    return value


def is_inside(child: str | os.PathLike, parent: str | os.PathLike) -> bool:
    """True when ``child`` is ``parent`` or lies below it (after resolving symlinks)."""
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents


def real_folders(files: Iterable[str | os.PathLike]) -> set[Path]:
    """The real folders (symlinks resolved) that hold ``files``: what an output rule must compare against.

    An input that is itself a folder (a DICOM series) holds its files: the folder, not its parent, is protected.
    """
    return {Path(f).resolve() if Path(f).is_dir() else Path(f).resolve().parent for f in files}


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s), the system's reason and the errno name (e.g. ``ENOSPC``)."""
    reason = exc.strerror or str(exc)
    code = f" ({errno.errorcode[exc.errno]})" if exc.errno in errno.errorcode else ""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return f"{reason}{code}"
    if reason.startswith(paths[0]):  # our own errors already lead with the path
        return f"{reason}{code}"
    return f"{' -> '.join(paths)}: {reason}{code}"
