"""The instructor's round trip, through the `labsupport` command on a scratch course (slow):
an LMS zip with messy names -> collect -> grade -> manual grading -> feedback, and the
student's self-check of the same notebook.

The download holds two submissions of one student (the later one must win, although it is
listed first), a notebook under another name, a stray file of a student, a file nobody
owns, and a Mac's resource-fork folder. Every feedback page is scanned for the lines
between the hidden-test markers of the source notebook.
"""

from __future__ import annotations

import csv
import html
import re
import shutil
import zipfile

import nbformat
import pytest

from labsupport.instructor import cli, demo

from .conftest import LABS, REPO, TEST_TIMEOUT

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]

LAB = LABS[0]
COMMENT = "Good: every minibatch is replayed m times. (manual comment)"
NOON, TEN = (2026, 11, 30, 12, 0, 0), (2026, 11, 30, 10, 0, 0)


def _hidden_lines(notebook) -> list[str]:
    lines, inside = [], False
    for cell in notebook.cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return lines


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", page))


@pytest.fixture()
def course(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "grading").mkdir()
    shutil.copy(LAB.source, tmp_path / "notebooks" / LAB.source.name)
    shutil.copy(REPO / "grading" / "nbgrader_config.py", tmp_path / "grading")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_collect_grade_feedback_round_trip(course, tmp_path, capsys):
    lab, grading_root = LAB.name, course / "grading"
    assert cli.main(["release", lab]) == 0
    source = nbformat.read(grading_root / "source" / lab / f"{lab}.ipynb", as_version=4)
    release = nbformat.read(grading_root / "release" / lab / f"{lab}.ipynb", as_version=4)
    good = demo.perfect(source, release)
    task, old, new = next(iter(demo.load_planted(REPO / "tests" / "planted"
                                                 / f"{LAB.stem}.py").values()))
    buggy = demo.with_bug(good, task, old, new)
    download = tmp_path / "submissions.zip"
    with zipfile.ZipFile(download, "w") as archive:
        for name, notebook, when in (
                (f"doejane_1001_5001_{lab}.ipynb", good, NOON),
                (f"doejane_1001_5002_{lab}.ipynb", release, TEN),  # older: dropped
                (f"smithbob_1002_5003_{lab}-1.ipynb", buggy, TEN),  # misnamed
                ("smithbob_1002_5003_notes.txt", "my notes", TEN),
                ("README.txt", "exported by Canvas", TEN),
                (f"__MACOSX/._doejane_1001_5001_{lab}.ipynb", "resource fork", TEN)):
            text = notebook if isinstance(notebook, str) else nbformat.writes(notebook)
            archive.writestr(zipfile.ZipInfo(name, when), text)
    roster = tmp_path / "roster.csv"
    roster.write_text("name,id\nJane Doe,1001\nBob Smith,1002\nAnn Roe,1003\n")
    capsys.readouterr()

    # Collect: the report, and the layout grading expects.
    assert cli.main(["collect", lab, str(download), "--roster", str(roster)]) == 0
    out = capsys.readouterr().out
    assert "2 submissions in grading/submitted/ (2 new, 0 replaced, 0 unchanged)" in out
    assert f"1001: submissions/doejane_1001_5002_{lab}.ipynb: older (2026-11-30 10:00:00 UTC)" \
        in out
    assert f"notebook named '{lab}-1.ipynb': collected as {lab}.ipynb" in out
    assert "1002: submissions/smithbob_1002_5003_notes.txt: not a notebook" in out
    assert "submissions/README.txt: no pattern matches" in out
    assert "Ignored 1 system files" in out and "MISSING (on the roster, no submission) (1): 1003" \
        in out
    submitted = grading_root / "submitted"
    assert sorted(p.relative_to(submitted).as_posix() for p in submitted.rglob("*")
                  if p.is_file()) == [f"1001/{lab}/{lab}.ipynb", f"1001/{lab}/timestamp.txt",
                                      f"1002/{lab}/{lab}.ipynb", f"1002/{lab}/timestamp.txt"]
    assert nbformat.read(submitted / "1001" / lab / f"{lab}.ipynb", as_version=4) == good
    assert nbformat.read(submitted / "1002" / lab / f"{lab}.ipynb", as_version=4) == buggy

    # Grade, then grade by hand through the gradebook (as the formgrader does).
    assert cli.main(["grade", lab, "--no-release", "--jobs", "2",
                     "--timeout", str(TEST_TIMEOUT)]) == 0
    with open(grading_root / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    auto = {(r["student"], r["cell"]): (float(r["score"]), float(r["max_score"]))
            for r in rows if r["kind"] == "auto"}
    assert all(score == top for (student, _), (score, top) in auto.items() if student == "1001")
    lost = [cell for (student, cell), (score, top) in auto.items()
            if student == "1002" and score < top]
    assert lost and all(cell.startswith(f"test_{task}_") for cell in lost)
    manual = next(r["cell"] for r in rows if r["kind"] == "manual")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{grading_root / 'gradebook.db'}") as gradebook:
        gradebook.find_comment(task, lab, lab, "1001").manual_comment = COMMENT
        grade = gradebook.find_grade(manual, lab, lab, "1001")
        grade.manual_score, grade.needs_manual_grade = 3.0, False
        gradebook.db.commit()

    # Collecting the same download again changes nothing; a different notebook for a graded
    # student is refused (and says so).
    capsys.readouterr()
    assert cli.main(["collect", lab, str(download)]) == 0
    assert "(0 new, 0 replaced, 2 unchanged)" in capsys.readouterr().out
    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(changed, "w") as archive:
        archive.writestr(zipfile.ZipInfo(f"doejane_1001_5009_{lab}.ipynb", NOON),
                         nbformat.writes(buggy))
    assert cli.main(["collect", lab, str(changed)]) == 1
    assert "NOT REPLACED (already graded)" in capsys.readouterr().out
    assert nbformat.read(submitted / "1001" / lab / f"{lab}.ipynb", as_version=4) == good

    # Feedback: one page per student, manual grading shown, hidden tests never.
    assert cli.main(["feedback", lab]) == 0
    pages = {s: (grading_root / "feedback" / s / lab / f"{lab}.html").read_text()
             for s in ("1001", "1002")}
    assert sorted(p.relative_to(grading_root / "feedback").as_posix()
                  for p in (grading_root / "feedback").rglob("*.html")) == \
        [f"1001/{lab}/{lab}.html", f"1002/{lab}/{lab}.html"]
    hidden = _hidden_lines(source)
    assert hidden
    public = {line.strip() for nb in (release, good, buggy) for c in nb.cells
              for line in c.source.splitlines()}
    secret = [line for line in hidden if line not in public]
    assert len(secret) >= 5
    for student, page in pages.items():
        text = _text(page)
        assert "BEGIN HIDDEN TESTS" not in page
        assert not [line for line in secret if line in text or line in page], student
    first, second = _text(pages["1001"]), _text(pages["1002"])
    assert COMMENT in first and f"{manual}\ngraded by hand\n3 / " in first
    assert "Hidden tests: FAILED" not in first
    for student, cell in auto:
        if student == "1001":
            assert f"{cell}\n{'hidden test' if 'hidden' in cell else 'test'}\n" in first
    for cell in lost:
        row = re.search(rf"{cell}\n(hidden test|test)\n0 / \S+\nfailed: (\w+Error)", second)
        assert row, cell
        if row.group(1) == "hidden test":
            assert f"Hidden tests: FAILED: {row.group(2)}" in second

    # The student's self-check (no nbgrader) agrees with the grader on the visible tests.
    capsys.readouterr()
    assert cli.main(["validate", str(submitted / "1002" / lab / f"{lab}.ipynb"),
                     "--timeout", str(TEST_TIMEOUT)]) == 1
    out = capsys.readouterr().out
    for (student, cell), (score, top) in auto.items():
        if student == "1002" and cell.endswith("_visible"):
            assert f"{'PASS' if score == top else 'FAIL'}  {cell} " in out
