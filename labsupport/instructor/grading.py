"""nbgrader, through its Python API: release, validate, autograde, and per-cell grade export.

The course root is ``grading/`` (``nbgrader_config.py``, ``source/``, ``release/``,
``submitted/``, ``autograded/``, ``gradebook.db``). The command-line tools have traps that
the functions here avoid: ``generate_assignment`` without ``--force`` keeps a stale
release, ``validate`` exits 0 when tests fail, ``export`` has totals only, and a deleted
test cell is scored as nothing without a word. So: releases are always forced and their
result checked, validation returns nbgrader's result dict, grades are read per cell from
the Gradebook, and submissions missing a graded cell are flagged.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import OverwriteCells

from .cells import by_grade_id, is_graded, order, test_cells
from .labs import Lab, kernel_environment, write_source

CONFIG_FILE = "nbgrader_config.py"


class GradingError(RuntimeError):
    """An nbgrader step failed; the message carries nbgrader's log."""


# --------------------------------------------------------------------------------------
# Configuration


def load_config(root: str | os.PathLike[str], **overrides: Any) -> Any:
    """The course's nbgrader configuration: ``<root>/nbgrader_config.py`` plus ``overrides``.

    ``overrides`` are ``"Class.trait"``-style keys written as ``Class__trait``, e.g.
    ``load_config(root, Execute__timeout=20)``. The course root is always ``root``.
    """
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    config = Config()
    if (root / CONFIG_FILE).is_file():
        config.merge(PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config())
    for key, value in overrides.items():
        section, _, trait = key.partition("__")
        if not trait:
            raise ValueError(f"Override {key!r} must look like Class__trait, e.g. "
                             "Execute__timeout=20.")
        config[section][trait] = value
    config.CourseDirectory.root = str(root)
    return config


class _NoExchangeNoise(logging.Filter):
    """Drops nbgrader's CRITICAL "Unwritable directory" about the exchange, which the course
    does not use (students hand in through the instructor, not nbgrader's exchange)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unwritable directory" not in record.getMessage()


def api(root: str | os.PathLike[str], config: Any = None) -> Any:
    """An ``NbGraderAPI`` for the course root ``root`` (configuration from :func:`load_config`)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    kernel_environment()
    logger = logging.getLogger("traitlets")
    if not any(isinstance(f, _NoExchangeNoise) for f in logger.filters):
        logger.addFilter(_NoExchangeNoise())
    config = config if config is not None else load_config(root)
    coursedir = CourseDirectory(config=config)
    coursedir.root = str(Path(root).resolve())
    return NbGraderAPI(coursedir=coursedir, config=config)


def _check(result: dict[str, Any], what: str) -> dict[str, Any]:
    if not result.get("success"):
        detail = result.get("error") or result.get("log") or "(no log)"
        raise GradingError(f"{what} failed:\n{detail}")
    return result


# --------------------------------------------------------------------------------------
# Release


def release(labs: Iterable[Lab], root: str | os.PathLike[str], config: Any = None) -> list[Path]:
    """Convert each lab to ``source/<lab>/<lab>.ipynb`` and generate its student copy.

    Always forced (a stale release is impossible). Returns the release notebooks' paths.
    """
    root = Path(root)
    grader = api(root, config)
    paths = []
    for lab in labs:
        write_source(lab, root)
        _check(grader.generate_assignment(lab.name, force=True, create=True),
               f"generate_assignment {lab.name}")
        path = root / "release" / lab.name / f"{lab.name}.ipynb"
        if not path.is_file():
            raise GradingError(f"generate_assignment {lab.name} reported success but wrote no "
                               f"{path}.")
        unlock_parameters(path)
        paths.append(path)
    return paths


def unlock_parameters(path: str | os.PathLike[str]) -> bool:
    """Let students edit the release's ``parameters`` cell (profile, dataset, knobs).

    The cell stays an nbgrader *locked* cell, so grading puts the instructor's text back
    (nbgrader's OverwriteCells) and the autograder runs the lab's own parameters (``smoke``,
    whatever the student typed). In the student copy it is made editable and its checksum
    removed, so that the Validate button does not report an edited parameters cell as a
    changed test cell. Returns whether the notebook had such a cell.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    found = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            cell.metadata["editable"] = True
            cell.metadata.get("nbgrader", {}).pop("checksum", None)
            found = True
    if found:
        nbformat.write(notebook, path)
    return found


# --------------------------------------------------------------------------------------
# Validation


def validate(notebook: str | os.PathLike[str], *, config: Any = None, invert: bool = False,
             ignore_checksums: bool = False) -> dict[str, Any]:
    """Run nbgrader's validator on ``notebook`` and return its result dict.

    The dict is empty when every test passes (``invert=False``) or none does
    (``invert=True``); otherwise it has ``failed``, ``passed``, ``changed`` or
    ``type_changed`` lists. The notebook runs in its own folder: validate a copy when
    that folder must stay clean.
    """
    from nbgrader.validator import Validator

    kernel_environment()
    validator = Validator(config=config)
    validator.invert = invert
    validator.ignore_checksums = ignore_checksums
    return validator.validate(str(notebook))


# --------------------------------------------------------------------------------------
# Autograding


class RestoreMissingCells(OverwriteCells):
    """``OverwriteCells`` that also puts back graded cells a student deleted.

    nbgrader 0.9.6 can re-add missing grade cells (``add_missing_cells``), but its placement
    looks up the cell just before the missing one in the source and crashes (``KeyError``)
    when that cell is not a graded or solution cell present in the submission (e.g. the
    student also deleted the answer cell, or a locked markdown cell precedes the test). Here a
    missing graded cell goes right after the nearest earlier cell of the source notebook that
    the submission still has (first if none), so a broken submission is still graded. When
    the source notebook cannot be found, restored cells go at the end.
    """

    def _source_order(self) -> list[str] | None:
        """grade_ids of the source notebook, in order (None if it cannot be found)."""
        import nbformat

        owner = self.parent
        while owner is not None and not hasattr(owner, "coursedir"):
            owner = getattr(owner, "parent", None)
        if owner is None:
            return None
        coursedir = owner.coursedir
        folder = coursedir.format_path(coursedir.source_directory, ".", self.assignment_id)
        path = Path(folder) / f"{self.notebook_id}.ipynb"
        if not path.is_file():
            return None
        notebook = nbformat.read(path, as_version=4)
        return [gid for gid in (c.metadata.get("nbgrader", {}).get("grade_id")
                                for c in notebook.cells) if gid]

    def add_missing_grade_cells(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        by_name = {cell.name: cell for cell in source_nb.source_cells}
        grade_cells = {cell.name: cell for cell in source_nb.grade_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        order = self._source_order() or []
        missing_last = [name for name in grade_cells if name not in order]
        for grade_id in [*[g for g in order if g in grade_cells], *missing_last]:
            present = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
            if grade_id in present:
                continue
            self.log.warning("Graded cell %s is missing from the submission; restoring it",
                             grade_id)
            cell = self.missing_cell_transform(by_name[grade_id],
                                               grade_cells[grade_id].max_score,
                                               is_solution=grade_id in solution_ids)
            if nb.get("nbformat_minor", 0) >= 5:
                taken = {c.get("id") for c in nb.cells}
                cell["id"] = grade_id if grade_id not in taken else f"restored-{grade_id}"
            position = len(nb.cells)
            if grade_id in order:
                position = 0
                for earlier in reversed(order[: order.index(grade_id)]):
                    if earlier in present:
                        position = present.index(earlier) + 1
                        break
            nb.cells.insert(position, cell)
        return nb, resources


def autograde(root: str | os.PathLike[str], lab: str, *, students: Sequence[str] | None = None,
              jobs: int = 1, timeout: int | None = None, force: bool = True,
              out: str | os.PathLike[str] | None = None) -> GradeReport:
    """Autograde ``submitted/*/<lab>/`` (sandboxed, ``jobs`` at a time) into ``root``'s
    gradebook and write ``grades.csv`` and ``flags.csv``. See :func:`grade_all`."""
    return grade_all(root, [lab], students=students, jobs=jobs, timeout=timeout, force=force,
                     out=out, release_first=False)


# --------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True)
class CellGrade:
    """One row of ``grades.csv``: a student's score on one graded cell of one lab.

    ``kind`` is ``auto`` (a test cell) or ``manual`` (a written answer graded by hand);
    ``needs_grading`` is true while a person still has to look at the cell."""

    student: str
    lab: str
    cell: str
    score: float | None
    max_score: float
    kind: str
    needs_grading: bool


@dataclass(frozen=True)
class Flag:
    """One row of ``flags.csv``: something about a submission an instructor must look at."""

    student: str
    lab: str
    cell: str
    problem: str


def submitted_students(root: str | os.PathLike[str], lab: str) -> list[str]:
    """Students with a ``submitted/<student>/<lab>/`` folder, sorted."""
    base = Path(root) / "submitted"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / lab).is_dir())


def cell_grades(root: str | os.PathLike[str], config: Any = None) -> list[CellGrade]:
    """Per-cell scores of every autograded submission, from the Gradebook, in notebook order."""
    from nbgrader.api import Gradebook, MissingEntry

    grader = api(root, config)
    rows = []
    with Gradebook(grader.coursedir.db_url, grader.coursedir.course_id) as gradebook:
        for assignment in gradebook.assignments:
            tests = set(release_test_cells(root, assignment.name))
            for student in sorted(s.id for s in gradebook.students):
                try:
                    submission = gradebook.find_submission(assignment.name, student)
                except MissingEntry:
                    continue
                for notebook in submission.notebooks:
                    order = _cell_order(root, assignment.name, notebook.name)
                    for grade in sorted(notebook.grades,
                                        key=lambda g: (order.get(g.name, len(order)), g.name)):
                        graded = grade.auto_score is not None or grade.manual_score is not None
                        rows.append(CellGrade(
                            student, assignment.name, grade.name,
                            grade.score if graded else None, float(grade.max_score),
                            "auto" if grade.name in tests else "manual",
                            bool(grade.needs_manual_grade)))
    return sorted(rows, key=lambda r: (r.student, r.lab))


def _cell_order(root: str | os.PathLike[str], lab: str, notebook: str) -> dict[str, int]:
    """grade_id -> position in the release notebook (empty when it is not there)."""
    import nbformat

    path = Path(root) / "release" / lab / f"{notebook}.ipynb"
    if not path.is_file():
        return {}
    return order(nbformat.read(path, as_version=4))


def check_submissions(root: str | os.PathLike[str], lab: str,
                      students: Iterable[str] | None = None) -> list[Flag]:
    """Flags for ``submitted/*/<lab>/``: graded cells that are missing (restored from the
    source and graded) and locked test cells whose text was changed (restored)."""
    import nbformat

    root = Path(root)
    release_path = root / "release" / lab / f"{lab}.ipynb"
    if not release_path.is_file():
        raise GradingError(f"No release notebook {release_path}; run `labsupport release`.")
    released = by_grade_id(nbformat.read(release_path, as_version=4))
    flags = []
    for student in students if students is not None else submitted_students(root, lab):
        path = root / "submitted" / student / lab / f"{lab}.ipynb"
        if not path.is_file():
            flags.append(Flag(student, lab, "", f"no {lab}.ipynb in the submission"))
            continue
        try:
            submitted = by_grade_id(nbformat.read(path, as_version=4))
        except Exception:  # noqa: BLE001 (the grading run flags unreadable notebooks)
            continue
        for grade_id, cell in released.items():
            if grade_id not in submitted:
                if is_graded(cell):
                    flags.append(Flag(student, lab, grade_id,
                                      "graded cell missing from the submission "
                                      "(restored from the source and graded)"))
            elif (is_graded(cell) and not cell.metadata["nbgrader"].get("solution")
                  and submitted[grade_id].source != cell.source):
                flags.append(Flag(student, lab, grade_id,
                                  "test cell changed by the student (restored before grading)"))
    return flags


def ungraded_flags(rows: Iterable[CellGrade], students: Iterable[str], lab: str) -> list[Flag]:
    """Flags for autograded test cells left without a score."""
    rows = list(rows)
    return [Flag(row.student, row.lab, row.cell, "test cell has no score (missing or not run)")
            for row in rows if row.lab == lab and row.student in set(students)
            and row.score is None and row.kind == "auto"]


def release_test_cells(root: str | os.PathLike[str], lab: str) -> list[str]:
    """grade_ids of the autograded test cells of ``release/<lab>/<lab>.ipynb``."""
    import nbformat

    path = Path(root) / "release" / lab / f"{lab}.ipynb"
    if not path.is_file():
        return []
    return list(test_cells(nbformat.read(path, as_version=4)))


def write_csv(path: str | os.PathLike[str], rows: Iterable[Any], row_type: type) -> Path:
    """Write dataclass ``rows`` (of ``row_type``) as CSV with a header, atomically."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(row_type)])
    for row in rows:
        writer.writerow(["" if v is None else ("yes" if v is True else "no" if v is False else v)
                         for v in astuple(row)])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)
    return path


@dataclass
class GradeReport:
    """What :func:`grade_all` did: per-cell grades, flags, the files written, and the
    submissions graded, skipped (unchanged) and failed."""

    grades: list[CellGrade]
    flags: list[Flag]
    grades_csv: Path
    flags_csv: Path
    graded: list[str]
    skipped: list[str]
    failed: list[str]
    mode: str


def grade_all(root: str | os.PathLike[str], labs: Iterable[Lab | str], *,
              students: Sequence[str] | None = None, jobs: int = 1, timeout: int | None = None,
              force: bool = False, release_first: bool = True,
              out: str | os.PathLike[str] | None = None, shard_spec: str | None = None,
              progress: Any = None) -> GradeReport:
    """Autograde new or changed submissions of ``labs`` and write ``grades.csv``/``flags.csv``.

    Every submission runs in the sandbox on a private copy of the course (see
    :mod:`labsupport.instructor.autograde`), ``jobs`` at a time; results merge into the
    gradebook in a fixed order, so grades do not depend on ``jobs``. A submission already
    graded with the same notebook and the same lab version is skipped unless ``force``;
    manual grades are always kept. With ``shard_spec="i/n"`` only that shard is graded and
    its results stay in ``out`` for :func:`merge_results` (nothing is merged here).
    """
    from . import autograde as ag
    from .sandbox import mode, warn_if_not_isolated

    root = Path(root)
    labs = list(labs)
    names = [lab if isinstance(lab, str) else lab.name for lab in labs]
    if release_first:
        release([lab for lab in labs if not isinstance(lab, str)], root)
    current = mode()
    warn_if_not_isolated(current)
    all_jobs = ag.shard(ag.jobs_for(root, names, students), shard_spec)
    ag.prepare_cache(names)
    state = ag.load_state(root)
    fingerprints = {lab: ag.lab_fingerprint(root, lab) for lab in names}
    todo = [job for job in all_jobs
            if force or shard_spec or not ag.is_current(state, job, fingerprints[job.lab])]
    skipped = [job.key for job in all_jobs if job not in todo]
    out = Path(out) if out else root / "results"
    if out.exists() and not shard_spec:
        shutil.rmtree(out)
    results = ag.run_jobs(todo, root, out, workers=jobs, timeout=timeout, progress=progress)
    if shard_spec:
        return GradeReport([], [Flag(r.student, r.lab, f["cell"], f["problem"])
                                for r in results for f in r.flags],
                           out, out, [r.key for r in results if r.graded], skipped,
                           [r.key for r in results if not r.graded], current)
    return _finish(root, results, out, names, skipped, current, students)


def merge_results(root: str | os.PathLike[str], folders: Iterable[str | os.PathLike[str]]
                  ) -> GradeReport:
    """Merge the results of ``grade --shard`` runs (their output folders) into ``root``."""
    from . import autograde as ag

    root = Path(root)
    results = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*/*/result.json")):
            results.append((ag.load_result(path), path.parent.parent.parent))
    if not results:
        raise GradingError(f"No results (*/*/result.json) in {', '.join(map(str, folders))}.")
    results.sort(key=lambda item: item[0].key)
    labs = sorted({r.lab for r, _ in results})
    return _finish(root, [r for r, _ in results], None, labs, [], "merged",
                   None, folders=[f for _, f in results])


def _finish(root: Path, results: list[Any], out: Path | None, labs: list[str],
            skipped: list[str], current: str, students: Sequence[str] | None,
            folders: list[Path] | None = None) -> GradeReport:
    """Merge results into the gradebook, update the state, write both CSVs."""
    from . import autograde as ag

    state = ag.load_state(root)
    previous = ag._read_json(root / "flags-state.json")
    flags: list[Flag] = []
    for index, result in enumerate(results):
        folder = folders[index] if folders else out
        extra = ag.merge(root, result, folder)
        mine = [Flag(result.student, result.lab, f["cell"], f["problem"])
                for f in [*result.flags, *extra]]
        previous[result.key] = [asdict(f) for f in mine]
        flags += mine
        if result.graded:
            state[result.key] = {"submission": result.submission_sha256, "lab": result.lab_sha256}
        else:
            state.pop(result.key, None)
    ag._atomic_write(root / ag.STATE_FILE, json.dumps(state, indent=1, sort_keys=True))
    ag._atomic_write(root / "flags-state.json", json.dumps(previous, indent=1, sort_keys=True))
    for lab in labs:
        flags += check_submissions(root, lab, [r.student for r in results if r.lab == lab])
    grades = cell_grades(root)
    graded_keys = {r.key for r in results}
    for lab in labs:
        flags += ungraded_flags(grades, [r.student for r in results if r.lab == lab], lab)
    # Flags of submissions skipped as unchanged are carried over from their last grading.
    for key in sorted(set(previous) - graded_keys):
        flags += [Flag(**f) for f in previous[key]]
    flags = sorted(dict.fromkeys(flags), key=lambda f: (f.lab, f.student))
    return GradeReport(
        grades, flags,
        write_csv(root / "grades.csv", grades, CellGrade),
        write_csv(root / "flags.csv", flags, Flag),
        [r.key for r in results if r.graded], skipped,
        [r.key for r in results if not r.graded], current)
