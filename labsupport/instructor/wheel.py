"""The student wheel: the ``labsupport`` package without its instructor layer, reproducibly.

What students install (locally, or on Colab through the pinned first cell of every release
notebook) is a wheel of the *student layer*: ``labsupport`` without ``labsupport/instructor/``,
plus the committed course files (``assets/``) as ``labsupport.course_assets``. It has no
console script (the ``labsupport`` command is instructor code) and depends on the student
runtime only (``[project].dependencies``, not the ``course`` extras: no nbgrader, papermill).

:func:`student_wheel` stages those files in a temporary folder with a generated minimal
``pyproject.toml`` and builds them with ``pip wheel --no-deps --no-build-isolation`` under a
fixed ``SOURCE_DATE_EPOCH``, so the same inputs give the same bytes (hence the same sha256,
which the Colab cell pins). The version is the project's with a local label derived from the
content (``0.1.0+s<12 hex>``): a changed package gets a new file name, so wheels of earlier
releases can stay hosted beside it. Built wheels are cached by the hash of everything that
determines their bytes (files, generated metadata, setuptools version), in the checkout's
``build/wheels/`` (else the user cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..paths import sha256_file
from .labs import CourseError

#: Every student wheel is built as of this instant (zip timestamps): 2024-01-01 00:00 UTC.
SOURCE_DATE_EPOCH = "1704067200"
#: Oldest setuptools that builds wheels by itself (``bdist_wheel`` without the ``wheel`` package).
MIN_SETUPTOOLS = (70, 1)
#: Bumped when the staging or the generated pyproject changes (invalidates the cache).
FORMAT = 1
#: Files of the student layer that ship (as in the project's package-data).
SHIPPED_SUFFIXES = (".py", ".json", ".md", ".png")
SHIPPED_NAMES = ("py.typed",)

_PACKAGE = Path(__file__).resolve().parents[1]  # the labsupport package
_CHECKOUT = _PACKAGE.parent


@dataclass(frozen=True)
class StudentWheel:
    """A built student wheel: its file, sha256 and version (``0.1.0+s...``)."""

    path: Path
    sha256: str
    version: str

    @property
    def name(self) -> str:
        """The wheel's file name, e.g. ``labsupport-0.1.0+s0123abcd4567-py3-none-any.whl``."""
        return self.path.name


def _shipped(relative: Path) -> bool:
    """A file of the package that ships: code, ``py.typed`` and the course files (no caches,
    no hidden files)."""
    return (not any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
            and (relative.suffix in SHIPPED_SUFFIXES or relative.name in SHIPPED_NAMES))


def student_files(package: str | os.PathLike[str] = _PACKAGE,
                  course_assets: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """What the student wheel holds: archive path (``labsupport/...``) -> source file.

    ``package`` is the ``labsupport`` folder; ``labsupport/instructor/`` is left out.
    ``course_assets`` (default: the checkout's ``assets/``, else the package's installed
    ``course_assets/``) ships as ``labsupport/course_assets/``.
    """
    package = Path(package)
    if course_assets is None:
        checkout_assets = package.parent / "assets"
        course_assets = checkout_assets if checkout_assets.is_dir() else package / "course_assets"
    course_assets = Path(course_assets)
    if not (course_assets / "manifest.json").is_file():
        raise CourseError(f"No course assets (manifest.json) in {course_assets}; build the "
                          "student wheel from the course checkout.")
    files: dict[str, Path] = {}
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        if (path.is_file() and relative.parts[0] not in ("instructor", "course_assets")
                and _shipped(relative)):
            files[f"labsupport/{relative.as_posix()}"] = path
    for path in course_assets.rglob("*"):
        relative = path.relative_to(course_assets)
        if path.is_file() and _shipped(relative):
            files[f"labsupport/course_assets/{relative.as_posix()}"] = path
    return dict(sorted(files.items()))


def _project(checkout: Path) -> dict:
    """The checkout's ``[project]`` table (name, version, dependencies, ...)."""
    path = checkout / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise CourseError(f"Cannot read [project] from {path} ({error}); build the student "
                          "wheel from the course checkout.") from error
    return project


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _pyproject(project: dict, version: str, packages: list[str], patterns: list[str]) -> str:
    """The minimal pyproject of the staged student layer: runtime dependencies only, no
    scripts, no extras."""
    return "\n".join([
        "[build-system]",
        f'requires = ["setuptools>={".".join(map(str, MIN_SETUPTOOLS))}"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(project['name'])}",
        f"version = {json.dumps(version)}",
        f"description = {json.dumps(project.get('description', '') + ' (student layer)')}",
        f"requires-python = {json.dumps(project.get('requires-python', '>=3.11'))}",
        f"dependencies = {_toml_list(list(project.get('dependencies', [])))}",
        "",
        "[tool.setuptools]",
        f"packages = {_toml_list(packages)}",
        "include-package-data = false",
        "",
        "[tool.setuptools.package-data]",
        f'"*" = {_toml_list(patterns)}',
        "",
    ])


def _digest(files: dict[str, Path], *extra: str) -> str:
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    for text in extra:
        digest.update(f"{text}\0".encode())
    return digest.hexdigest()


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def _build_site() -> tuple[str | None, str]:
    """``(folder to put first on PYTHONPATH or None, setuptools version)`` for the build.

    The interpreter's own setuptools when it is new enough; else a newer one further down
    ``sys.path`` (a layered environment such as ``.venv-peers`` sees the course environment's
    site-packages after its own, older setuptools), whose folder then goes first.
    """
    from importlib.metadata import distributions

    found = [(dist.version, dist) for dist in distributions(name="setuptools")]
    if found and _version_tuple(found[0][0]) >= MIN_SETUPTOOLS:
        return None, found[0][0]
    newer = [(v, d) for v, d in found if _version_tuple(v) >= MIN_SETUPTOOLS]
    if not newer:
        have = found[0][0] if found else "none"
        raise CourseError("Building the student wheel needs setuptools>="
                          f"{'.'.join(map(str, MIN_SETUPTOOLS))} (found {have}); install it "
                          "into the course environment (`make env` does).")
    version, dist = max(newer, key=lambda item: _version_tuple(item[0]))
    return str(dist.locate_file("")), version


def _cache_root() -> Path:
    if (_CHECKOUT / "pyproject.toml").is_file() and os.access(_CHECKOUT, os.W_OK):
        return _CHECKOUT / "build" / "wheels"
    from ..data import cache_dir

    return cache_dir() / "wheels"


_BUILT: dict[str, StudentWheel] = {}


def student_wheel(*, cache: str | os.PathLike[str] | None = None) -> StudentWheel:
    """The student wheel of the ``labsupport`` package in use (built when not cached).

    ``cache`` is the folder of cached builds (default ``build/wheels/`` of the checkout).
    Raises :class:`CourseError` when the package is not in a checkout or the build fails.
    """
    files = student_files()
    project = _project(_CHECKOUT)
    packages = sorted({name.rsplit("/", 1)[0].replace("/", ".") for name in files})
    patterns = sorted({"py.typed", *(f"*{Path(n).suffix}" for n in files
                                     if not n.endswith((".py", "py.typed")))})
    content = _digest(files, json.dumps(project.get("dependencies", [])),
                      str(project.get("requires-python")), str(project.get("description")))
    version = f"{project['version']}+s{content[:12]}"
    pyproject = _pyproject(project, version, packages, patterns)
    site, setuptools_version = _build_site()
    key = _digest(files, pyproject, setuptools_version, SOURCE_DATE_EPOCH, str(FORMAT))[:20]
    folder = Path(cache) if cache is not None else _cache_root()
    memo = f"{folder}/{key}"
    if memo in _BUILT and _BUILT[memo].path.is_file():
        return _BUILT[memo]
    built = _cached(folder / key)
    if built is None:
        built = _build(files, pyproject, folder, key, site)
    if built.version != version:
        raise CourseError(f"The student wheel {built.path} has version {built.version}, "
                          f"expected {version}.")
    _BUILT[memo] = built
    return built


def _cached(folder: Path) -> StudentWheel | None:
    """The wheel in ``folder`` when its recorded sha256 still matches."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    record = folder / "sha256"
    if len(wheels) != 1 or not record.is_file():
        return None
    sha = sha256_file(wheels[0])
    if record.read_text().strip() != sha:
        return None
    return StudentWheel(wheels[0], sha, _wheel_version(wheels[0]))


def _wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def _build(files: dict[str, Path], pyproject: str, cache: Path, key: str,
           site: str | None) -> StudentWheel:
    """Stage ``files``, build them with pip, check the wheel, and move it into the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="student-wheel-") as tmp:
        stage = Path(tmp) / "src"
        for name, source in files.items():
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(0o644)  # the zip records modes: same on every machine
        (stage / "pyproject.toml").write_text(pyproject)
        out = Path(tmp) / "dist"
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTHONPATH", None)
        if site:
            env["PYTHONPATH"] = site
        command = [sys.executable, "-m", "pip", "--isolated", "wheel", "--quiet", "--no-deps",
                   "--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(stage)]
        result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        wheels = sorted(out.glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise CourseError("Building the student wheel failed:\n"
                              f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        check_wheel(wheels[0], files)
        final = cache / key
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        shutil.copy2(wheels[0], staging / wheels[0].name)
        sha = sha256_file(staging / wheels[0].name)
        (staging / "sha256").write_text(sha + "\n")
        try:
            staging.rename(final)
        except OSError:  # another process cached the same build meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            if _cached(final) is None:
                raise
    built = _cached(final)
    if built is None:
        raise CourseError(f"The cached student wheel in {final} is unreadable.")
    return built


def check_wheel(path: str | os.PathLike[str], files: dict[str, Path]) -> None:
    """The wheel holds exactly ``files`` (same bytes) besides its ``.dist-info``: no
    instructor code, no console script."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        members = {n for n in names if ".dist-info/" not in n}
        problems = sorted(members ^ set(files))
        problems += [n for n in members & set(files)
                     if archive.read(n) != files[n].read_bytes()]
        problems += [n for n in names if n.endswith("entry_points.txt")
                     or n.startswith("labsupport/instructor/")]
    if problems:
        raise CourseError(f"The student wheel {path} does not hold exactly the student layer: "
                          f"{', '.join(problems[:10])}")
