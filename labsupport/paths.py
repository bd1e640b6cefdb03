"""Where the course's committed files are: ``assets/`` in a checkout, or its installed copy.

The repository's ``assets/`` folder (asset manifest, trigger images) ships inside the
package as ``labsupport.course_assets``, so a pip-installed ``labsupport`` (on Colab) finds
the same files as a source checkout.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "LABSUPPORT_CACHE"

_CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"
_INSTALLED_ASSETS = Path(__file__).resolve().parent / "course_assets"


def course_asset(*parts: str) -> Path:
    """Path of a committed course file, e.g. ``course_asset("manifest.json")``.

    Prefers the checkout's ``assets/`` (so edits there take effect at once), else the copy
    installed with the package. Returns the checkout path when neither exists, so error
    messages name the file a developer would add.
    """
    for root in (_CHECKOUT_ASSETS, _INSTALLED_ASSETS):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    return _CHECKOUT_ASSETS.joinpath(*parts)


def cache_dir() -> Path:
    """Where datasets and assets are cached: ``$LABSUPPORT_CACHE`` or ``~/.cache/labsupport``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "labsupport"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
