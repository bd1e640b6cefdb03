"""`labsupport collect`: LMS downloads (Canvas, Moodle, GitHub Classroom) into submitted/,
through nbgrader's zip_collect (no grading here: fast)."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labsupport.instructor import collect, grading

from .conftest import REPO

LAB = "lab1"


def _notebook(text: str) -> str:
    return nbformat.writes(new_notebook(cells=[new_code_cell(text)]))


@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "grading"
    (root / "release" / LAB).mkdir(parents=True)
    shutil.copy(REPO / "grading" / grading.CONFIG_FILE, root)
    (root / "release" / LAB / f"{LAB}.ipynb").write_text(_notebook("released"))
    return root


def _zip(path: Path, files: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (text, when) in files.items():
            archive.writestr(zipfile.ZipInfo(name, when), text)
    return path


def _submitted(root: Path, student: str) -> str:
    path = root / "submitted" / student / LAB / f"{LAB}.ipynb"
    return nbformat.read(path, as_version=4).cells[0].source


NOON, TEN = (2026, 11, 30, 12, 0, 0), (2026, 11, 30, 10, 0, 0)


def test_canvas_zip_keeps_the_latest_renames_and_reports(root, tmp_path):
    download = _zip(tmp_path / "submissions.zip", {
        "doejane_1001_5001_lab1.ipynb": (_notebook("newer"), NOON),
        "doejane_1001_5002_lab1.ipynb": (_notebook("older"), TEN),
        "smithbob_LATE_1002_5003_lab1-1.ipynb": (_notebook("bob"), TEN),
        "smithbob_LATE_1002_5003_notes.txt": ("notes", TEN),
        "roeann_1003_5004_lab2.ipynb": (_notebook("lab2"), TEN),
        "leeal_1004_5005_lab1.ipynb": (_notebook("right"), TEN),
        "leeal_1004_5005_scratch.ipynb": (_notebook("scratch"), NOON),
        "README.txt": ("readme", TEN),
        "lab1.ipynb": (_notebook("whose?"), TEN),
        "__MACOSX/._doejane_1001_5001_lab1.ipynb": ("junk", TEN),
    })
    report = collect.collect(root, LAB, download, roster=["1001", "1002", "1003", "1005"])
    assert report.collected == {"1001": ("new", "submissions/doejane_1001_5001_lab1.ipynb"),
                                "1002": ("new", "submissions/smithbob_LATE_1002_5003_lab1-1.ipynb"),
                                "1004": ("new", "submissions/leeal_1004_5005_lab1.ipynb")}
    assert _submitted(root, "1001") == "newer"  # by timestamp, although listed first
    assert _submitted(root, "1002") == "bob" and _submitted(root, "1004") == "right"
    assert (root / "submitted" / "1001" / LAB / "timestamp.txt").read_text() == \
        "2026-11-30 12:00:00"
    kinds = {(n.kind, n.student, Path(n.file).name) for n in report.notes}
    assert kinds == {
        ("duplicate", "1001", "doejane_1001_5002_lab1.ipynb"),
        ("renamed", "1002", "smithbob_LATE_1002_5003_lab1-1.ipynb"),
        ("late", "1002", "smithbob_LATE_1002_5003_lab1-1.ipynb"),
        ("non-notebook", "1002", "smithbob_LATE_1002_5003_notes.txt"),
        ("not-collected", "1003", "roeann_1003_5004_lab2.ipynb"),
        ("not-collected", "1004", "leeal_1004_5005_scratch.ipynb"),
        ("unmatched", "", "README.txt"), ("unmatched", "", "lab1.ipynb")}
    assert report.system_files == 1 and report.needs_attention  # a notebook nobody owns
    assert report.missing == ["1003", "1005"] and report.not_on_roster == ["1004"]
    text = collect.format_report(report)
    assert "MISSING (on the roster, no submission) (2): 1003, 1005" in text
    assert "older (2026-11-30 10:00:00 UTC) than" in text
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["1001", "1002", "1004"]


def test_moodle_folders_and_files_and_github_classroom(root, tmp_path):
    moodle = tmp_path / "moodle"
    (moodle / "Jane Doe_2001_assignsubmission_file_").mkdir(parents=True)
    (moodle / "Jane Doe_2001_assignsubmission_file_" / "lab1.ipynb").write_text(_notebook("j"))
    (moodle / "Bob Smith_2002_assignsubmission_file_lab1.ipynb").write_text(_notebook("b"))
    (moodle / "Ann Roe_2003_assignsubmission_onlinetext_onlinetext.html").write_text("<p/>")
    report = collect.collect(root, LAB, moodle)
    assert set(report.collected) == {"2001", "2002"} and _submitted(root, "2001") == "j"
    assert [n.kind for n in report.notes] == ["unmatched"]

    classroom = tmp_path / "lab1-free-at-submissions"
    repo = classroom / "lab1-free-at-jane-doe"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (repo / "lab1.ipynb").write_text(_notebook("gh"))
    (repo / "README.md").write_text("# lab1")
    report = collect.collect(root, LAB, classroom)
    assert report.collected == {"jane-doe": ("new", "lab1-free-at-submissions/"
                                             "lab1-free-at-jane-doe/lab1.ipynb")}
    assert report.system_files == 1 and [n.kind for n in report.notes] == ["non-notebook"]


def test_folder_duplicates_are_ordered_by_file_time(root, tmp_path):
    folder = tmp_path / "canvas"
    folder.mkdir()
    for name, text, when in (("a_1_1_lab1.ipynb", "new", 2000), ("a_1_2_lab1.ipynb", "old", 1000)):
        (folder / name).write_text(_notebook(text))
        os.utime(folder / name, (when, when))
    collect.collect(root, LAB, folder)
    assert _submitted(root, "1") == "new"


def test_a_graded_submission_is_never_replaced_silently(root, tmp_path):
    first = _zip(tmp_path / "a.zip", {"doejane_1001_5001_lab1.ipynb": (_notebook("v1"), TEN)})
    second = _zip(tmp_path / "b.zip", {"doejane_1001_5002_lab1.ipynb": (_notebook("v2"), NOON)})
    collect.collect(root, LAB, first)
    (root / "grading-state.json").write_text(json.dumps({f"{LAB}/1001": {}}))
    again = collect.collect(root, LAB, first)
    assert again.collected == {"1001": ("unchanged", "a/doejane_1001_5001_lab1.ipynb")}
    refused = collect.collect(root, LAB, second)
    assert refused.collected == {} and refused.needs_attention
    assert "already graded" in refused.of("refused")[0].message
    assert _submitted(root, "1001") == "v1"
    forced = collect.collect(root, LAB, second, force=True)
    assert forced.collected == {"1001": ("replaced", "b/doejane_1001_5002_lab1.ipynb")}
    assert _submitted(root, "1001") == "v2"
    backup = forced.backup / "1001" / LAB / f"{LAB}.ipynb"
    assert nbformat.read(backup, as_version=4).cells[0].source == "v1"


def test_roster_and_bad_input(tmp_path, root):
    roster = tmp_path / "roster.csv"
    roster.write_text("Name,ID,Section\nJane,1001,A\nBob,1002,B\n\n")
    assert collect.read_roster(roster) == ["1001", "1002"]
    roster.write_text("1001\n1002\n1001\n")
    assert collect.read_roster(roster) == ["1001", "1002"]
    with pytest.raises(collect.CollectError, match="No roster file"):
        collect.read_roster(tmp_path / "missing.csv")
    with pytest.raises(collect.CollectError, match="No download"):
        collect.collect(root, LAB, tmp_path / "missing.zip")
    (tmp_path / "broken.zip").write_text("not a zip")
    with pytest.raises(collect.CollectError, match="Could not unpack broken.zip"):
        collect.collect(root, LAB, tmp_path / "broken.zip")


def test_the_course_configuration_holds_the_patterns():
    config = grading.load_config(REPO / "grading")
    assert config.LmsCollector.named_regexps == list(collect.PATTERNS.values())
    assert "RedactHiddenTests" in " ".join(config.GenerateFeedback.preprocessors)
