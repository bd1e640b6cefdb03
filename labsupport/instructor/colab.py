"""The first code cell of every lab: on Google Colab it installs the student wheel, pinned.

Colab has neither the course checkout nor the package, so a release notebook installs
``labsupport`` there from the student bundle (never nbgrader: it would replace Colab's Jupyter
stack); elsewhere the cell does nothing (students in JupyterLab use their own environment).

Nobody copies that cell by hand. A lab source holds a short placeholder as its first code
cell (:data:`PLACEHOLDER`, grade_id ``colab_setup``); the release fills it in
(:func:`fill_colab_cell`, called by :func:`labsupport.instructor.labs.write_source`) with
:func:`colab_cell`: ``pip install "labsupport @ <bundle_url>/<wheel>#sha256=<hash>"``. The
wheel's file name carries its exact version and pip checks the ``#sha256=`` fragment (it
refuses a file with another hash: "THESE PACKAGES DO NOT MATCH THE HASHES"), so the cell
installs exactly the wheel the release was made with, built by
:func:`labsupport.instructor.wheel.student_wheel`.

The one setting is the bundle's URL (where ``build/student/`` is hosted): ``bundle_url`` in
``[tool.labsupport]`` of the course's ``pyproject.toml``, overridden by the environment
variable ``LABSUPPORT_BUNDLE_URL``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .labs import CourseError
from .wheel import StudentWheel, student_wheel

BUNDLE_URL_ENV = "LABSUPPORT_BUNDLE_URL"
#: Used when the course sets no bundle_url: a placeholder that cannot serve anything.
PLACEHOLDER_URL = "https://example.edu/tml-course/student"
GRADE_ID = "colab_setup"
#: The first code cell of every lab source (the release replaces it with :func:`colab_cell`).
PLACEHOLDER = ("# Google Colab setup: the release puts the pinned install of the course's "
               "support package\n# here (labsupport.instructor.colab); this source copy does "
               "nothing.")


def bundle_url(root: str | os.PathLike[str] | None = None) -> str:
    """Where the student bundle is hosted: ``$LABSUPPORT_BUNDLE_URL``, else ``bundle_url`` of
    ``[tool.labsupport]`` in ``<root>/pyproject.toml``, else :data:`PLACEHOLDER_URL`."""
    url = os.environ.get(BUNDLE_URL_ENV, "").strip()
    source = f"${BUNDLE_URL_ENV}"
    if not url and root is not None:
        path = Path(root) / "pyproject.toml"
        try:
            settings = tomllib.loads(path.read_text()).get("tool", {}).get("labsupport", {})
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CourseError(f"Cannot read the course settings in {path}: {error}") from error
        url, source = str(settings.get("bundle_url", "")).strip(), f"bundle_url in {path}"
    url = (url or PLACEHOLDER_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "file") or not (parts.netloc or parts.path):
        raise CourseError(f"The bundle URL {url!r} ({source}) must be an https:// (or http://, "
                          "file://) URL of the folder where build/student/ is hosted.")
    return url


def is_placeholder(url: str) -> bool:
    """True for the placeholder URL (the course has not said where its bundle lives)."""
    return urlsplit(url).netloc in ("example.edu", "example.com", "example.org")


def wheel_url(url: str, wheel: StudentWheel) -> str:
    """The wheel's URL in the bundle hosted at ``url`` (``+`` of the version escaped)."""
    return f"{url.rstrip('/')}/{quote(wheel.name)}"


def requirement(url: str, wheel: StudentWheel) -> str:
    """The pip requirement the Colab cell installs: the wheel's URL, pinned by its sha256."""
    return f"labsupport @ {wheel_url(url, wheel)}#sha256={wheel.sha256}"


def colab_cell(url: str, wheel: StudentWheel) -> str:
    """The source of the generated Colab cell for the bundle at ``url`` holding ``wheel``."""
    return (
        f"# Google Colab only: install the course's support package, labsupport {wheel.version}\n"
        "# (pinned: pip checks the sha256). Does nothing elsewhere.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
        f'                    "{requirement(url, wheel)}"],\n'
        "                   check=True)"
    )


_PINNED: list[StudentWheel] = []


@contextmanager
def pinned(wheel: StudentWheel) -> Iterator[StudentWheel]:
    """Within the block, releases pin ``wheel`` (the one a bundle ships), even if the package
    changes meanwhile."""
    _PINNED.append(wheel)
    try:
        yield wheel
    finally:
        _PINNED.pop()


def fill_colab_cell(notebook: Any, root: str | os.PathLike[str] | None = None, *,
                    wheel: StudentWheel | None = None) -> Any:
    """Replace the placeholder first code cell of ``notebook`` with the generated Colab cell
    (its metadata kept); ``root`` is the course checkout holding the bundle_url setting.
    The wheel is ``wheel``, else the one :func:`pinned` names, else the student wheel of the
    package in use (built when its hash is not cached). Returns the notebook."""
    code = [cell for cell in notebook.cells if cell.get("cell_type") == "code"]
    first = code[0] if code else None
    grade_id = (first or {}).get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if first is None or grade_id != GRADE_ID or first.source.strip() != PLACEHOLDER:
        raise CourseError(f"The first code cell of a lab must be the Colab placeholder (grade_id "
                          f"{GRADE_ID!r}, source labsupport.instructor.colab.PLACEHOLDER); the "
                          "release generates the install cell from it.")
    wheel = wheel or (_PINNED[-1] if _PINNED else student_wheel())
    first.source = colab_cell(bundle_url(root), wheel)
    return notebook
