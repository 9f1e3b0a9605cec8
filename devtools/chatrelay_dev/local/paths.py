"""Where the repository's files are, seen from the installed (editable) package."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout: ``CHATRELAY_REPO`` or the nearest parent holding ``template.yaml``."""
    if "CHATRELAY_REPO" in os.environ:
        return Path(os.environ["CHATRELAY_REPO"]).resolve()
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in (start, *start.parents):
            if (parent / "template.yaml").is_file() and (parent / "Makefile").is_file():
                return parent
    raise FileNotFoundError("cannot find the repository (template.yaml); set CHATRELAY_REPO")
