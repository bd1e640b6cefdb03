"""The student bundle: everything students receive, in one folder to host (``build/student/``).

::

    build/student/
        README.md                          for students: install locally, Colab, the assets
        SHA256SUMS                         sha256 of every other file (``sha256sum -c SHA256SUMS``)
        labsupport-<version>-py3-none-any.whl
                                           the student layer (:mod:`labsupport.instructor.wheel`)
        notebooks/labN.ipynb               the release notebooks (Colab cell pinned to that wheel)
        assets/<dataset>/<profile>/*.pt    pre-built models, laid out as the labsupport cache

:func:`build_bundle` (``make student-bundle``, ``labsupport student-bundle``) releases the labs
in a scratch nbgrader course root (never ``grading/`` or its gradebook), builds the assets of
one profile and dataset into the user's cache and copies the verified files, and writes the
whole bundle in a temporary folder next to the output that is renamed into place at the end:
an earlier bundle is removed first, and a failure leaves no bundle rather than half of one.

Host the folder at the course's ``bundle_url`` (:mod:`labsupport.instructor.colab`); the
notebooks' Colab cell installs ``<bundle_url>/<wheel>`` and pip checks its sha256.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .colab import bundle_url, colab_cell, is_placeholder, wheel_url
from .labs import CourseError, Lab
from .wheel import StudentWheel, sha256_file, student_wheel

CHECKSUMS = "SHA256SUMS"
#: A file every bundle holds; an existing output folder without it is never deleted.
README = "README.md"
_CHECKSUM_LINE = re.compile(r"^(?P<sha>[0-9a-f]{64}) [ *](?P<name>.+)$")


@dataclass(frozen=True)
class Bundle:
    """A written bundle: its folder, wheel, notebooks and assets (paths inside the folder)."""

    folder: Path
    url: str
    wheel: StudentWheel
    notebooks: list[Path]
    assets: list[Path]

    def files(self) -> list[Path]:
        """Every file of the bundle, sorted."""
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def size(self) -> int:
        """Total size in bytes."""
        return sum(p.stat().st_size for p in self.files())


def write_checksums(folder: str | os.PathLike[str]) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum`` format) for every other file under ``folder``."""
    folder = Path(folder)
    lines = [f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}"
             for path in sorted(folder.rglob("*"))
             if path.is_file() and path.relative_to(folder).as_posix() != CHECKSUMS]
    target = folder / CHECKSUMS
    target.write_text("\n".join(lines) + "\n")
    return target


def verify_checksums(folder: str | os.PathLike[str]) -> list[str]:
    """Problems with ``folder``'s ``SHA256SUMS``: files that differ, are missing or unlisted
    (empty when every file matches)."""
    folder = Path(folder)
    listed: dict[str, str] = {}
    for line in (folder / CHECKSUMS).read_text().splitlines():
        match = _CHECKSUM_LINE.match(line)
        if not match:
            return [f"malformed line in {CHECKSUMS}: {line!r}"]
        listed[match["name"]] = match["sha"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    present.discard(CHECKSUMS)
    problems = [f"missing: {name}" for name in sorted(set(listed) - present)]
    problems += [f"not listed: {name}" for name in sorted(present - set(listed))]
    problems += [f"sha256 differs: {name}" for name in sorted(set(listed) & present)
                 if sha256_file(folder / name) != listed[name]]
    return problems


def _clear(out: Path) -> None:
    """Remove an earlier bundle at ``out``; refuse to delete a folder that is not one."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / CHECKSUMS).is_file()):
        raise CourseError(f"{out} exists and is not a student bundle (no {CHECKSUMS}); "
                          "choose another --out or remove it yourself.")
    shutil.rmtree(out)


def _release(labs: list[Lab], root: Path, folder: Path, wheel: StudentWheel) -> list[Path]:
    """Release ``labs`` in a scratch nbgrader course root, their Colab cell pinned to
    ``wheel``; copy the notebooks to ``folder``."""
    from .colab import pinned
    from .grading import CONFIG_FILE, load_config, release

    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="student-release-") as tmp:
        scratch = Path(tmp)
        config_file = root / "grading" / CONFIG_FILE
        if config_file.is_file():
            shutil.copy(config_file, scratch / CONFIG_FILE)
        with pinned(wheel):
            paths = release(labs, scratch, load_config(scratch))
        copies = []
        for lab, path in zip(labs, paths, strict=True):
            copies.append(Path(shutil.copy(path, folder / f"{lab.name}.ipynb")))
    return copies


def _assets(profile: str, dataset: str, folder: Path) -> list[Path]:
    """Build (or verify) every asset for ``profile`` and ``dataset`` in the user's cache, then
    copy the files into ``folder`` in the cache's layout (``assets/<dataset>/<profile>/``)."""
    from .. import assets
    from ..data import cache_dir

    built = assets.build_assets(None, dataset=dataset, profile=profile)
    cache = cache_dir()
    copies = []
    for path in built.values():
        source_sha = sha256_file(path)
        target = folder / path.relative_to(cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if sha256_file(target) != source_sha:
            raise CourseError(f"Copying the asset {path} into the bundle changed it.")
        copies.append(target)
    return copies


def build_bundle(out: str | os.PathLike[str], *, root: str | os.PathLike[str],
                 labs: Iterable[Lab], profile: str = "cpu",
                 dataset: str = "synthetic") -> Bundle:
    """Write the student bundle to ``out`` (see the module docstring); return it.

    ``root`` is the course checkout (its ``grading/nbgrader_config.py`` and bundle_url
    setting); ``profile`` and ``dataset`` choose which pre-built models ship.
    """
    root, out = Path(root), Path(out).resolve()
    labs = list(labs)
    if not labs:
        raise CourseError("No labs to put in the student bundle.")
    url = bundle_url(root)
    wheel = student_wheel()
    _clear(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        notebooks = _release(labs, root, work / "notebooks", wheel)
        expected = colab_cell(url, wheel)
        for path in notebooks:  # the release pinned the very wheel the bundle ships
            if _first_code(path) != expected:
                raise CourseError(f"{path.name}: its Colab cell does not pin {wheel.name}.")
        shutil.copyfile(wheel.path, work / wheel.name)
        assets = _assets(profile, dataset, work)
        (work / README).write_text(student_readme(url, wheel, [p.name for p in notebooks],
                                                  [p.relative_to(work) for p in assets]))
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        write_checksums(work)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Bundle(out, url, StudentWheel(out / wheel.name, wheel.sha256, wheel.version),
                  [out / "notebooks" / p.name for p in notebooks],
                  [out / p.relative_to(work) for p in assets])


def _first_code(path: Path) -> str:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return next((c.source for c in notebook.cells if c.cell_type == "code"), "")


def student_readme(url: str, wheel: StudentWheel, notebooks: list[str],
                   assets: list[Path]) -> str:
    """The bundle's README.md: what is in it and how to use it (``assets``: paths relative to
    the bundle, ``assets/<dataset>/<profile>/<name>.pt``)."""
    placeholder = ("\n> **Instructor: this bundle names a placeholder URL.** Set `bundle_url` "
                   "(pyproject.toml) or `LABSUPPORT_BUNDLE_URL` and rebuild it.\n"
                   if is_placeholder(url) else "")
    folders = sorted({p.parent.as_posix() for p in assets})
    kinds = ", ".join(f"dataset `{f.split('/')[1]}` at profile `{f.split('/')[2]}`"
                      for f in folders) or "none"
    first = folders[0] if folders else "assets/<dataset>/<profile>"
    fetch = "\n".join(
        f"!mkdir -p ~/.cache/labsupport/{folder} && wget -q -P ~/.cache/labsupport/{folder} "
        + " ".join(f"{url}/{(folder + '/' + p.name)}" for p in assets
                   if p.parent.as_posix() == folder)
        for folder in folders)
    lab_list = ", ".join(f"`notebooks/{name}`" for name in notebooks)
    return f"""# Trustworthy machine learning labs: student bundle
{placeholder}
| file | what |
| --- | --- |
| `notebooks/` | the lab notebooks you fill in: {lab_list} |
| `{wheel.name}` | `labsupport` {wheel.version}, the course's support package |
| `assets/` | pre-built models ({kinds}) |
| `SHA256SUMS` | checksums of every file: `sha256sum -c SHA256SUMS` |

This bundle is hosted at {url}/.

## On your machine (JupyterLab)

Python 3.11 or newer. Install the package (it brings PyTorch and the other libraries it
needs) and JupyterLab, then open your lab:

```bash
python -m venv tml && source tml/bin/activate
pip install ./{wheel.name} jupyterlab
jupyter lab notebooks/{notebooks[0]}
```

Fill in every cell that says `raise NotImplementedError(...)` and run the visible test cell
after each task. The notebook's first code cell does nothing outside Colab.

## On Google Colab

Upload the notebook (File > Upload notebook), choose a GPU runtime (Runtime > Change runtime
type) and run the cells from the top. The first code cell installs exactly this wheel from
{wheel_url(url, wheel)}: pip checks its sha256 ({wheel.sha256}) and refuses any other file.
Do not install nbgrader on Colab. Download the `.ipynb` when done and hand it in.

## Pre-built models

The labs build the models they hand out when they are not in the cache, which takes a while
without a GPU. The cache is `~/.cache/labsupport`, or the folder named by the environment
variable `LABSUPPORT_CACHE`; every model file is checked against its recorded sha256 when it
is loaded. To use the models of this bundle, either copy its `assets/` folder into the cache
(giving `~/.cache/labsupport/{first}/...`), or point the cache at this
folder:

```bash
export LABSUPPORT_CACHE="$PWD"     # the folder holding this README and assets/
```

On Colab, run this in a cell before the lab's experiments:

```
{fetch}
```

A model is used when the notebook runs with its dataset and profile ({kinds}).
"""
