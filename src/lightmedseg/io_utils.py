"""Small file-system helpers shared by every pipeline stage: atomic writes, safe output folders."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping


def _temp_tag() -> str:
    """``{host}-{pid}``: part of every temporary's name, so a run only ever removes its own or a dead run's."""
    host = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash or exception leaves ``target`` untouched (either the old file or nothing), never half a file.
    ``suffix`` keeps writers that infer the format from the extension (e.g. ``.nii.gz``) happy. The file gets
    the mode a plain ``open()`` would give it (0666 minus the umask), not mkstemp's 0600, so shared models,
    run folders and reports stay readable by the users the umask allows. The temporary's name carries the
    host and process ID (``.{name}.{host}-{pid}.XXXXXXXX{suffix}``), so two runs writing into one folder never
    remove each other's; one left by a killed writer is removed by :func:`remove_stale_temporaries`. An
    ``OSError`` while writing (a full disk, a quota) is raised again naming ``target``, not the temporary.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_temp_tag()}.", suffix=(suffix or ".tmp"), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with naming_write_errors(target, tmp_path):
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, default_file_mode())
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def naming_write_errors(target: str | os.PathLike, *own: Path) -> Iterator[None]:
    """An ``OSError`` raised while writing ``target`` (a full disk, a quota) is raised again naming ``target``.

    One that already names it, or names another file (an input being read: not ``target`` and not one of
    ``own``, the writer's temporaries), or carries no errno, is raised as it is. Used by :func:`atomic_path` and
    by the appending writers (CSV logs, TensorBoard events), so every failed write reads the same.
    """
    target = Path(target)
    try:
        yield
    except OSError as exc:
        if exc.errno is None or str(exc.strerror or exc).startswith(str(target)) or (
                exc.filename is not None and Path(exc.filename) not in (target, *own)):
            raise
        raise OSError(exc.errno, f"{target}: cannot write ({exc.strerror or exc})") from None


def write_failure(target: str | os.PathLike, exc: BaseException) -> OSError:
    """An ``OSError`` naming ``target`` for a library's failed write (torch's and SimpleITK's ``RuntimeError``).

    Those libraries lose the errno; a full disk is recognised from the message or the free space left
    (under 64 MiB), and reported as ``ENOSPC``, anything else as ``EIO`` with the library's first line.
    """
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    try:
        nearly_full = shutil.disk_usage(Path(target).parent).free < 64 * 2**20
    except OSError:
        nearly_full = False
    if "no space" in str(exc).lower() or nearly_full:
        return OSError(errno.ENOSPC, f"{target}: cannot write (No space left on device)")
    return OSError(errno.EIO, f"{target}: cannot write ({first})")


def default_file_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (0o666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(target: str | os.PathLike, suffix: str = "") -> list[Path]:
    """Delete temporaries that :func:`atomic_path` left beside ``target`` when its writer was killed.

    Only names of the exact forms :func:`atomic_path` makes are touched, so a user's own hidden files are
    never removed: ``.{name}.{host}-{pid}.XXXXXXXX{suffix}`` when that process is no longer alive on this
    host (another live run's temporary is kept), or was written on another host more than a day ago; and the
    older form ``.{name}.XXXXXXXX{suffix}``. Returns the files removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    end = re.escape(suffix or ".tmp") + "$"
    legacy = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}" + end)
    tagged = re.compile(re.escape(f".{target.name}.") + r"([A-Za-z0-9_-]+)-(\d+)\.[a-z0-9_]{8}" + end)
    host = _temp_tag().rsplit("-", 1)[0]
    removed = []
    for f in target.parent.iterdir():
        if not f.is_file() or f.is_symlink():
            continue
        m = tagged.match(f.name)
        if m:
            if m.group(1) == host:
                stale = not _pid_alive(int(m.group(2)))
            else:
                stale = time.time() - f.stat().st_mtime > 86400
        else:
            stale = bool(legacy.match(f.name))
        if stale:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _pid_alive(pid: int) -> bool:
    """True when a process with this ID runs on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def hash_file(path: str | os.PathLike, h: "hashlib._Hash | None" = None) -> "hashlib._Hash":
    """Feed a file's bytes, in 1 MiB blocks, into ``h`` (a new SHA-256 when None) and return it."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h


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
