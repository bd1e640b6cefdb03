"""The Colab cell: generated at release from the bundle's URL, pinned to the student wheel's
version and sha256; a no-op outside Colab; never hand-copied into a lab source."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import types
import zipfile
from urllib.parse import unquote, urlsplit

import pytest

from labsupport.instructor import colab, wheel
from labsupport.instructor.labs import CourseError, discover_labs, find_root, to_notebook

REPO = find_root(__file__)
LABS = discover_labs(REPO / "notebooks")


def _first_code(notebook):
    return next(c for c in notebook.cells if c.cell_type == "code")


@pytest.fixture()
def no_url_override(monkeypatch):
    monkeypatch.delenv(colab.BUNDLE_URL_ENV, raising=False)


@pytest.fixture(scope="module")
def student_wheel():
    return wheel.student_wheel()


@pytest.mark.parametrize("lab", LABS, ids=[lab.name for lab in LABS])
def test_every_lab_source_starts_with_the_placeholder(lab):
    first = _first_code(to_notebook(lab))
    assert first.source == colab.PLACEHOLDER
    meta = first.metadata["nbgrader"]
    assert meta["grade_id"] == colab.GRADE_ID and meta["locked"] and not meta["solution"]


@pytest.mark.parametrize("lab", LABS, ids=[lab.name for lab in LABS])
def test_no_lab_source_hand_copies_an_install(lab):
    text = lab.source.read_text()
    for copied in ("google.colab", "pip install", "git+", "labsupport @", ".whl", "sha256=",
                   colab.PLACEHOLDER_URL, colab.bundle_url(REPO)):
        assert copied not in text, f"{lab.source.name} hand-copies {copied!r}"


@pytest.mark.parametrize("lab", LABS, ids=[lab.name for lab in LABS])
def test_release_conversion_generates_the_pinned_cell(lab, student_wheel, no_url_override):
    source = _first_code(to_notebook(lab))
    filled = _first_code(colab.fill_colab_cell(to_notebook(lab), REPO))
    assert filled.source == colab.colab_cell(colab.bundle_url(REPO), student_wheel)
    assert filled.metadata == source.metadata  # grade_id, locked: nbgrader sees the same cell


def _run_cell(cell: str, monkeypatch) -> list:
    calls = []

    def fake_run(*args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("Popen called"))
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("call called"))
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("check_call"))
    exec(compile(cell, "<colab cell>", "exec"), {})
    return calls


@pytest.fixture()
def generated_cell(student_wheel, no_url_override) -> str:
    return _first_code(colab.fill_colab_cell(to_notebook(LABS[0]), REPO)).source


def test_colab_cell_does_nothing_outside_colab(generated_cell, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert _run_cell(generated_cell, monkeypatch) == []


def test_colab_cell_installs_exactly_the_bundles_wheel_on_colab(generated_cell, student_wheel,
                                                                monkeypatch):
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    calls = _run_cell(generated_cell, monkeypatch)
    assert len(calls) == 1
    (command,), kwargs = calls[0]
    assert kwargs.get("check") is True
    assert command[:5] == [sys.executable, "-m", "pip", "install", "-q"] and len(command) == 6
    name, _, url = command[5].partition(" @ ")
    assert name == "labsupport"
    location, _, fragment = url.partition("#")
    # The wheel at <bundle_url>/<file name>, pinned by its sha256 (pip checks the fragment).
    digest = hashlib.sha256(student_wheel.path.read_bytes()).hexdigest()
    assert fragment == f"sha256={digest}" == f"sha256={student_wheel.sha256}"
    assert location.rsplit("/", 1)[0] == colab.bundle_url(REPO)
    assert unquote(urlsplit(location).path.rsplit("/", 1)[1]) == student_wheel.name
    assert student_wheel.name.startswith(f"labsupport-{student_wheel.version}-")
    assert "nbgrader" not in " ".join(command)


def test_bundle_url_setting_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv(colab.BUNDLE_URL_ENV, raising=False)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert colab.bundle_url(tmp_path) == colab.PLACEHOLDER_URL
    assert colab.is_placeholder(colab.bundle_url(tmp_path))
    (tmp_path / "pyproject.toml").write_text(
        "[tool.labsupport]\nbundle_url = 'https://course.test/tml/student/'\n")
    assert colab.bundle_url(tmp_path) == "https://course.test/tml/student"
    assert not colab.is_placeholder(colab.bundle_url(tmp_path))
    monkeypatch.setenv(colab.BUNDLE_URL_ENV, "https://mirror.test/tml")
    assert colab.bundle_url(tmp_path) == "https://mirror.test/tml"
    monkeypatch.setenv(colab.BUNDLE_URL_ENV, "course.test/no-scheme")
    with pytest.raises(CourseError, match="must be an https://"):
        colab.bundle_url(tmp_path)


def test_the_course_sets_its_bundle_url_in_pyproject(no_url_override):
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["labsupport"]
    assert colab.bundle_url(REPO) == settings["bundle_url"].rstrip("/")


def test_a_hand_written_first_cell_is_refused(student_wheel):
    notebook = to_notebook(LABS[0])
    _first_code(notebook).source = 'import subprocess\nsubprocess.run(["pip", "install", "x"])'
    with pytest.raises(CourseError, match="Colab placeholder"):
        colab.fill_colab_cell(notebook, REPO, wheel=student_wheel)


def test_student_wheel_holds_the_student_layer_only(student_wheel):
    with zipfile.ZipFile(student_wheel.path) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names
                        if n.endswith(".dist-info/METADATA"))
    assert "labsupport/__init__.py" in names
    assert "labsupport/course_assets/manifest.json" in names
    assert not [n for n in names if n.startswith("labsupport/instructor/")]
    assert not [n for n in names if n.endswith("entry_points.txt")]  # no console script
    assert not [n for n in names if not n.startswith(("labsupport/", "labsupport-"))]
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    assert any(r.startswith("torch") for r in requires)
    for instructor_only in ("nbgrader", "papermill", "jupytext", "jupyterlab", "pytest"):
        assert not [r for r in requires if r.startswith(instructor_only)], requires
    assert f"Version: {student_wheel.version}\n" in metadata


@pytest.mark.slow
def test_student_wheel_is_reproducible(tmp_path):
    first = wheel.student_wheel(cache=tmp_path / "a")
    second = wheel.student_wheel(cache=tmp_path / "b")
    assert first.path != second.path
    assert first.sha256 == second.sha256 == wheel.sha256_file(second.path)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert wheel.student_wheel().sha256 == first.sha256  # the cached one is the same build
