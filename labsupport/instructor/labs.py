"""The course as files: lab discovery, jupytext conversion, papermill runs and their summary.

A lab is one jupytext ``py:percent`` file ``notebooks/labN_<slug>.py`` (the instructor's
version). Its nbgrader assignment and notebook are both called ``labN``. This module turns
the sources into notebooks (:func:`to_notebook`, :func:`write_source`), runs them with
papermill (:func:`run_lab`) and summarises what the runs wrote (:func:`summarize`).
nbgrader lives in :mod:`labsupport.instructor.grading`; papermill runs in :mod:`labsupport.instructor.runs`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_PATTERN = re.compile(r"^lab(?P<number>\d+)_(?P<slug>[A-Za-z0-9_]+)\.py$")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class CourseError(RuntimeError):
    """The course layout or a lab source is not what the pipeline expects (message says why)."""


@dataclass(frozen=True)
class Lab:
    """One lab: ``name`` (``lab1``, the nbgrader assignment and notebook), its source file."""

    number: int
    name: str
    source: Path

    @property
    def stem(self) -> str:
        """The source file's stem, e.g. ``lab1_free_adversarial_training``."""
        return self.source.stem


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The course repository: the first folder at or above ``start`` (default: the current
    folder) holding ``notebooks/`` and ``pyproject.toml``; else the one holding this package."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    package_root = Path(__file__).resolve().parents[2]
    if (package_root / "notebooks").is_dir():
        return package_root
    raise CourseError(f"No course repository (a folder with notebooks/ and pyproject.toml) "
                      f"at or above {here}; run labsupport from the course checkout.")


def discover_labs(notebooks: str | os.PathLike[str]) -> list[Lab]:
    """Every ``labN_<slug>.py`` in ``notebooks``, ordered by N."""
    folder = Path(notebooks)
    if not folder.is_dir():
        raise CourseError(f"No lab folder at {folder}.")
    labs: dict[int, Lab] = {}
    for path in sorted(folder.glob("lab*.py")):
        match = LAB_PATTERN.match(path.name)
        if not match:
            continue
        number = int(match["number"])
        if number in labs:
            raise CourseError(f"Two sources for lab{number}: {labs[number].source.name} and "
                              f"{path.name}; keep one.")
        labs[number] = Lab(number, f"lab{number}", path)
    return [labs[n] for n in sorted(labs)]


def select_labs(labs: list[Lab], names: list[str] | None) -> list[Lab]:
    """The labs named in ``names`` (``lab1``, ``1``, a stem or a file name); all when empty."""
    if not names:
        return labs
    chosen = []
    for name in names:
        key = Path(name).stem
        key = f"lab{key}" if key.isdigit() else key
        found = [lab for lab in labs if key in (lab.name, lab.stem)]
        if not found:
            known = ", ".join(lab.name for lab in labs) or "none"
            raise CourseError(f"Unknown lab {name!r}; the labs are: {known}.")
        chosen.extend(found)
    return chosen


def to_notebook(lab: Lab) -> Any:
    """The lab source as an nbformat v4 notebook (kernelspec ``python3``), validated."""
    import jupytext
    import nbformat

    notebook = jupytext.read(lab.source, fmt="py:percent")
    # nbformat 4.5 cell ids, stable across conversions: the grade_id, else the position.
    notebook.nbformat, notebook.nbformat_minor = 4, max(notebook.get("nbformat_minor", 0), 5)
    used: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        cell_id = grade_id if grade_id and grade_id not in used else f"cell-{index}"
        cell["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", cell_id)[:64]
        used.add(cell["id"])
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata.setdefault("language_info", {"name": "python"})
    notebook.metadata.pop("jupytext", None)
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        raise CourseError(f"{lab.source} does not convert to a valid notebook: {error}") from error
    return notebook


def solution_namespace(source: str | os.PathLike[str], grade_ids: tuple[str, ...]) -> dict:
    """Execute a lab source's import lines (from its ``setup`` cell) and then the cells
    ``grade_ids`` (the instructor's solutions); return the resulting namespace.

    For tests and benchmarks that measure the lab's own solution, not a copy of it.
    """
    import jupytext

    notebook = jupytext.read(source, fmt="py:percent")
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells}
    missing = [g for g in ("setup", *grade_ids) if g not in cells]
    if missing:
        raise CourseError(f"{source} has no cells with grade_id {missing}.")
    imports = [line for line in cells["setup"].splitlines()
               if line.startswith(("import ", "from "))]
    namespace: dict = {}
    exec("\n".join(imports), namespace)
    for grade_id in grade_ids:
        exec(cells[grade_id], namespace)
    return namespace


def write_source(lab: Lab, grading_root: str | os.PathLike[str]) -> Path:
    """Write ``grading/source/<lab>/<lab>.ipynb`` from the lab's source; return its path.

    The placeholder first code cell becomes the generated Colab cell (pinned to the student
    wheel: :func:`labsupport.instructor.colab.fill_colab_cell`). Files nbgrader copies along
    with the notebook (everything else in the folder) are removed, so the source folder holds
    exactly the converted notebook.
    """
    import nbformat

    from .colab import fill_colab_cell

    folder = Path(grading_root) / "source" / lab.name
    if folder.exists():
        for stale in folder.iterdir():
            if stale.is_file():
                stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lab.name}.ipynb"
    nbformat.write(fill_colab_cell(to_notebook(lab), find_root(lab.source)), path)
    return path


def kernel_environment() -> None:
    """Make child processes (kernels, ``alembic``) see this environment.

    Prepends this interpreter's ``bin/`` to ``PATH`` (nbgrader shells out to ``alembic``) and
    the folder holding ``labsupport`` to ``PYTHONPATH`` (kernels import the same package).
    """
    bins = [Path(sys.executable).parent]
    alembic = importlib.util.find_spec("alembic")
    if alembic is not None and alembic.origin:
        # <env>/lib/pythonX.Y/site-packages/alembic/__init__.py -> <env>/bin (a layered env
        # such as .venv-peers imports alembic from the course env, whose bin/ has the script)
        bins.append(Path(alembic.origin).resolve().parents[4] / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    for bin_dir in reversed([str(b) for b in bins if b == bins[0] or (b / "alembic").exists()]):
        if bin_dir not in path:
            path.insert(0, bin_dir)
    os.environ["PATH"] = os.pathsep.join(path)
    package_parent = str(Path(__file__).resolve().parents[2])
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in pythonpath:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_parent, *pythonpath])
