"""Command-line interface: ``lightmedseg SUBCOMMAND ...`` (see ``lightmedseg --help``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_arg(text: str) -> Path:
    """argparse ``type`` for a file or folder: refuses an empty string, which ``Path`` would read as "."."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; give a file or folder name (use . for the current folder)")
    return Path(text)
