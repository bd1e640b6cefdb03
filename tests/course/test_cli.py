"""The ``labsupport`` command, in a scratch copy of the course (never the real grading/)."""

from __future__ import annotations

import shutil
import sys
import types

import nbformat
import pytest

from labsupport.instructor import cli

from .conftest import LABS, REPO


@pytest.fixture()
def scratch_course(tmp_path, monkeypatch):
    """A minimal course checkout: the first lab, the nbgrader config, a pyproject."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "grading").mkdir()
    shutil.copy(LABS[0].source, tmp_path / "notebooks" / LABS[0].source.name)
    shutil.copy(REPO / "grading" / "nbgrader_config.py", tmp_path / "grading")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_release_builds_source_and_release_and_is_never_stale(scratch_course, capsys):
    lab = LABS[0].name
    assert cli.main(["release"]) == 0
    release = scratch_course / "grading" / "release" / lab / f"{lab}.ipynb"
    first = nbformat.read(release, as_version=4)
    assert (scratch_course / "grading" / "source" / lab / f"{lab}.ipynb").is_file()
    # Change the source: a second release must pick the change up (forced, never stale).
    source = scratch_course / "notebooks" / LABS[0].source.name
    source.write_text(source.read_text().replace("# %% [markdown]", "# %% [markdown]\n# NEW", 1))
    assert cli.main(["release", lab]) == 0
    second = nbformat.read(release, as_version=4)
    assert second.cells[0].source.startswith("NEW") and first.cells[0].source != \
        second.cells[0].source
    assert f"released grading/release/{lab}/{lab}.ipynb" in capsys.readouterr().out


def test_unknown_lab_is_a_clear_error(scratch_course, capsys):
    assert cli.main(["release", "lab99"]) == 2
    assert "Unknown lab 'lab99'" in capsys.readouterr().err


def test_assets_build_calls_the_assets_module(scratch_course, monkeypatch):
    calls = []
    fake = types.ModuleType("labsupport.assets")
    fake.build_assets = lambda names, **kwargs: calls.append((names, kwargs))
    monkeypatch.setitem(sys.modules, "labsupport.assets", fake)
    import labsupport

    monkeypatch.setattr(labsupport, "assets", fake, raising=False)
    assert cli.main(["assets", "build", "--all", "--dataset", "synthetic"]) == 0
    assert cli.main(["assets", "build", "a", "b", "--profile", "smoke"]) == 0
    assert calls == [(None, {"dataset": "synthetic", "profile": "auto"}),
                     (["a", "b"], {"dataset": "auto", "profile": "smoke"})]
    assert cli.main(["assets", "build"]) == 2


def test_every_command_has_help():
    parser = cli.build_parser()
    for command in ("release", "validate", "grade", "run", "course", "assets", "collect",
                    "feedback"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0


@pytest.mark.slow
def test_grade_reports_an_ungradable_submission_and_exits_non_zero(scratch_course, capsys):
    lab = LABS[0].name
    bad = scratch_course / "grading" / "submitted" / "broken-student" / lab / f"{lab}.ipynb"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not a notebook")
    assert cli.main(["grade", "--jobs", "1"]) == 1
    out = capsys.readouterr()
    assert "could not grade: " in out.err and "broken-student" in out.err
    flags = (scratch_course / "grading" / "flags.csv").read_text()
    assert "broken-student" in flags and "could not be graded: unreadable notebook" in flags
    log = scratch_course / "grading" / "logs" / lab / "broken-student.log"
    assert log.is_file() and str(log.relative_to(scratch_course / "grading")) in flags


def test_demo_grading_uses_a_scratch_course_root(scratch_course):
    labs = cli.select_labs(cli.discover_labs(scratch_course / "notebooks"), None)
    scratch = cli.demo_course(scratch_course, labs)
    assert scratch == scratch_course / cli.DEMO_ROOT
    lab = labs[0].name
    assert (scratch / "submitted" / "demo-perfect" / lab / f"{lab}.ipynb").is_file()
    assert not (scratch_course / "grading" / "submitted").exists()
    assert not (scratch_course / "grading" / "gradebook.db").exists()


def test_validate_takes_lab_names_or_notebooks_not_both(scratch_course, capsys):
    notebook = scratch_course / "mine.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    assert cli.main(["validate", str(notebook), LABS[0].name]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["validate", str(scratch_course / "missing.ipynb")]) == 2
    assert "No notebook at" in capsys.readouterr().err


def test_collect_and_feedback_say_what_is_wrong(scratch_course, capsys):
    assert cli.main(["collect", LABS[0].name, "no-such.zip"]) == 2
    assert "No download at" in capsys.readouterr().err
    assert cli.main(["collect", "lab99", "no-such.zip"]) == 2
    assert cli.main(["feedback"]) == 2
    assert "No gradebook" in capsys.readouterr().err
