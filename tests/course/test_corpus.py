"""A corpus of broken and dishonest submissions graded in one sandboxed run (slow).

Next to an honest student (graded first, then graded by hand), the corpus of
``tests/corpus/submissions.py`` is graded with two jobs. Nothing may crash or hang; the
honest student's files and gradebook rows stay byte-identical; no process survives; no file
appears outside the sandboxes; every cheat scores 0 on what it cheats or is flagged; points
earned before a breakage are kept; a submission that cannot be graded is flagged and the
run reports failure, while all others are graded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labsupport.instructor import autograde, grading, sandbox
from labsupport.instructor.labs import Lab

from .conftest import REPO, make_root

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]

LAB = Lab(99, "lab99", REPO / "tests" / "corpus" / "lab99_corpus.py")
VICTIM = "honest-victim"
TIMEOUT = 10


@functools.cache
def _corpus_module():
    spec = importlib.util.spec_from_file_location(
        "corpus_submissions", REPO / "tests" / "corpus" / "submissions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _gradebook_rows(root: Path, student: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(root / "gradebook.db") as db:
        grades = db.execute(
            "select g.id, g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade "
            "from grade g join submitted_notebook n on g.notebook_id = n.id "
            "join submitted_assignment a on n.assignment_id = a.id "
            "where a.student_id = ? order by g.id", (student,)).fetchall()
        comments = db.execute(
            "select c.id, c.auto_comment, c.manual_comment from comment c "
            "join submitted_notebook n on c.notebook_id = n.id "
            "join submitted_assignment a on n.assignment_id = a.id "
            "where a.student_id = ? order by c.id", (student,)).fetchall()
    return grades + comments


def _sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0].isdigit()
            and sandbox.SLOT_UID <= int(line.split()[0]) < sandbox.SLOT_UID + 100
            or "sleep 120" in line or "pwned" in line]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("corpus-course")).resolve()
    grading.release([LAB], root)
    source = nbformat.read(root / "source" / "lab99" / "lab99.ipynb", as_version=4)
    release = nbformat.read(root / "release" / "lab99" / "lab99.ipynb", as_version=4)
    module = _corpus_module()
    from labsupport.instructor import demo

    demo.write_notebook(demo.perfect(source, release),
                        root / "submitted" / VICTIM / "lab99" / "lab99.ipynb")
    first = grading.grade_all(root, ["lab99"], jobs=1, timeout=TIMEOUT, release_first=False)
    assert first.graded == [f"lab99/{VICTIM}"], first
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("answer", "lab99", "lab99", VICTIM)
        grade.manual_score = 1.0
        comment = gradebook.find_comment("answer", "lab99", "lab99", VICTIM)
        comment.manual_comment = "Well argued."
        gradebook.db.commit()
    victim_rows = _gradebook_rows(root, VICTIM)
    victim_files = _digest(root / "submitted" / VICTIM)
    victim_graded = _digest(root / "autograded" / VICTIM)
    corpus = module.build(source, release, root=str(root), victim=VICTIM)
    for student, entry in corpus.items():
        path = root / "submitted" / student / "lab99" / "lab99.ipynb"
        if entry.raw is not None:
            path.parent.mkdir(parents=True)
            path.write_bytes(entry.raw)
        else:
            demo.write_notebook(entry.notebook, path)
    others_before = {s: _digest(root / "submitted" / s) for s in corpus}
    started = time.monotonic()
    report = grading.grade_all(root, ["lab99"], jobs=2, timeout=TIMEOUT, release_first=False)
    elapsed = time.monotonic() - started
    time.sleep(6)  # longer than any detached process of the corpus waits before it writes
    return {"root": root, "corpus": corpus, "report": report, "elapsed": elapsed,
            "victim_rows": victim_rows, "victim_files": victim_files,
            "victim_graded": victim_graded, "others_before": others_before,
            "release": release}


def _scores(report, student):
    return {row.cell: row.score for row in report.grades if row.student == student}


def _flags(report, student):
    return [f.problem for f in report.flags if f.student == student]


def test_corpus_is_large_and_covers_cheats_and_breakage(graded):
    corpus = graded["corpus"]
    assert len(corpus) >= 30
    assert sum(e.cheat for e in corpus.values()) >= 15
    assert sum(e.fails for e in corpus.values()) >= 2


def test_every_submission_is_graded_or_reported_and_nothing_hangs(graded):
    report, corpus = graded["report"], graded["corpus"]
    failed = {key.split("/")[1] for key in report.failed}
    assert failed == {s for s, e in corpus.items() if e.fails}
    for student in failed:
        assert any("could not be graded" in p for p in _flags(report, student)), student
        log = graded["root"] / "logs" / "lab99" / f"{student}.log"
        assert log.is_file()
    # Each submission has a per-cell bound (TIMEOUT, plus the grace of a deaf kernel).
    assert graded["elapsed"] < len(corpus) * (2 * TIMEOUT + 30)


def test_the_unchanged_honest_submission_is_skipped_and_untouched(graded):
    report, root = graded["report"], graded["root"]
    assert f"lab99/{VICTIM}" in report.skipped
    assert _gradebook_rows(root, VICTIM) == graded["victim_rows"]
    assert _digest(root / "submitted" / VICTIM) == graded["victim_files"]
    assert _digest(root / "autograded" / VICTIM) == graded["victim_graded"]
    scores = _scores(report, VICTIM)
    assert scores["answer"] == 1.0 and scores["test_double_hidden"] == 2.0


def test_no_submission_changed_another_or_left_anything_behind(graded):
    root = graded["root"]
    for student, before in graded["others_before"].items():
        assert _digest(root / "submitted" / student) == before, student
    for entry in graded["corpus"].values():
        for marker in entry.markers:
            assert not Path(marker).exists(), f"a sandboxed process wrote {marker}"
    deadline = time.monotonic() + 15  # a killed namespace may take a moment to be reaped
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(1)
    left = subprocess.run(["ps", "-eo", "uid,pid,ppid,stat,args"], capture_output=True,
                          text=True).stdout if _sandbox_processes() else ""
    assert not _sandbox_processes(), left


def test_scores_and_flags_of_every_entry(graded):
    report, corpus = graded["report"], graded["corpus"]
    release = graded["release"]
    from labsupport.instructor.cells import test_cells

    points = test_cells(release)
    problems = []
    for student, entry in corpus.items():
        if entry.fails:
            continue
        scores, flags = _scores(report, student), _flags(report, student)
        for cell in entry.zero:
            if scores.get(cell) != 0.0:
                problems.append(f"{student}: {cell} scored {scores.get(cell)}, expected 0")
        for cell in entry.full:
            if scores.get(cell) != points[cell]:
                problems.append(f"{student}: {cell} scored {scores.get(cell)}, expected "
                                f"{points[cell]} (earned points must be kept)")
        if entry.flag is not None and not any(entry.flag in f for f in flags):
            problems.append(f"{student}: no flag mentioning {entry.flag!r}; flags: {flags}")
        if entry.cheat:
            cheated = [c for c in points if scores.get(c) not in (0.0, None)
                       and c not in entry.full]
            if cheated and not flags:
                problems.append(f"{student}: cheat earned {cheated} without a flag")
    assert not problems, "\n".join(problems)


def test_hidden_tests_do_not_reach_a_students_output(graded):
    root = graded["root"]
    notebook = nbformat.read(root / "autograded" / "cheat-read-own-notebook" / "lab99"
                             / "lab99.ipynb", as_version=4)
    cell = next(c for c in notebook.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "double")
    text = "".join(o.get("text", "") for o in cell.get("outputs", []))
    assert "double of a range" not in text


def test_grading_is_isolated_here(graded):
    """CI runs as root on Linux with bubblewrap installed by the test command."""
    if os.environ.get("CI"):
        assert graded["report"].mode == "bwrap"


def test_results_do_not_depend_on_the_number_of_jobs_or_shards(tmp_path):
    """The same submissions graded with one job, with two, and in two shards merged
    afterwards give identical grades.csv."""
    module = _corpus_module()
    csvs = []
    for jobs in (1, 2, "shards"):
        root = make_root(tmp_path / f"jobs-{jobs}").resolve()
        grading.release([LAB], root)
        source = nbformat.read(root / "source" / "lab99" / "lab99.ipynb", as_version=4)
        release = nbformat.read(root / "release" / "lab99" / "lab99.ipynb", as_version=4)
        corpus = module.build(source, release, root=str(root), victim=VICTIM)
        from labsupport.instructor import demo

        for student in ("ok-stderr", "broken-deleted-cells", "cheat-patch-checks"):
            demo.write_notebook(corpus[student].notebook,
                                root / "submitted" / student / "lab99" / "lab99.ipynb")
        if jobs == "shards":
            folders = [root / "shards" / f"shard-{i}-of-2" for i in (1, 2)]
            for i, folder in enumerate(folders, 1):
                shard = grading.grade_all(root, ["lab99"], timeout=TIMEOUT, shard_spec=f"{i}/2",
                                          out=folder, release_first=False)
                assert len(shard.graded) in (1, 2) and not shard.failed
            assert not (root / "grades.csv").exists()  # a shard merges nothing
            report = grading.merge_results(root, folders)
        else:
            report = grading.grade_all(root, ["lab99"], jobs=jobs, timeout=TIMEOUT,
                                       release_first=False)
        csvs.append(report.grades_csv.read_text())
        assert autograde.load_state(root)
    assert csvs[0] == csvs[1] == csvs[2]
