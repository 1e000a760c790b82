"""Small file-system helpers shared by every pipeline stage: atomic writes, safe output folders."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash or exception leaves ``target`` untouched (either the old file or nothing), never half a file.
    ``suffix`` keeps writers that infer the format from the extension (e.g. ``.nii.gz``) happy.
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
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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


def is_inside(child: str | os.PathLike, parent: str | os.PathLike) -> bool:
    """True when ``child`` is ``parent`` or lies below it (after resolving symlinks)."""
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents
