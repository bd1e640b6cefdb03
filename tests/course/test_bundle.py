"""The student bundle (``labsupport student-bundle``, ``make student-bundle``): what students
receive holds no solution, no hidden test, no planted bug, no instructor code and nothing of
tests/; its checksums match; its wheel installs in a fresh environment and runs a release
notebook's setup with a shipped, verified asset.

The bundle is built once, at the ``smoke`` profile, from a scratch copy of the course (its
own ``grading/`` and a ``bundle_url`` pointing at the bundle's folder, so the notebooks' Colab
cell names a URL pip can really fetch).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from labsupport.instructor import bundle, cli, colab, demo, wheel
from labsupport.instructor.labs import to_notebook
from labsupport.models import load_model

from .conftest import LABS, PLANTED, REPO

SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN_REGION = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS",
           "### END HIDDEN TESTS")
#: Lines shorter than this (blank, brackets, ``pass``, ``return x``) are not evidence of a leak.
TRIVIAL = 25


def scratch_course(folder: Path, url: str, labs=LABS) -> Path:
    """A course checkout with ``labs``, the nbgrader config, and ``bundle_url = url``."""
    (folder / "notebooks").mkdir(parents=True)
    (folder / "grading").mkdir()
    for lab in labs:
        shutil.copy(lab.source, folder / "notebooks" / lab.source.name)
    shutil.copy(REPO / "grading" / "nbgrader_config.py", folder / "grading")
    (folder / "pyproject.toml").write_text(
        f"[project]\nname = 'scratch'\n\n[tool.labsupport]\nbundle_url = {json.dumps(url)}\n")
    return folder


@dataclass
class Built:
    course: Path
    out: Path
    cache: Path
    output: str


@contextlib.contextmanager
def course_env(course: Path, cache: Path):
    """cwd in the scratch course, a private labsupport cache, no bundle-URL override."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(course)
        mp.setenv("LABSUPPORT_CACHE", str(cache))
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        mp.delenv(colab.BUNDLE_URL_ENV, raising=False)
        yield mp


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    base = tmp_path_factory.mktemp("bundle")
    out = base / "hosted" / "student"
    course = scratch_course(base / "course", out.as_uri())
    cache = base / "cache"
    output = io.StringIO()
    with course_env(course, cache), contextlib.redirect_stdout(output):
        assert cli.main(["student-bundle", "--out", str(out), "--profile", "smoke"]) == 0
    return Built(course, out, cache, output.getvalue())


def bundle_wheel(out: Path) -> Path:
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


# --------------------------------------------------------------------------------------
# What the bundle holds


@pytest.mark.slow
def test_bundle_layout_and_cli_output(built):
    out = built.out
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    whl = bundle_wheel(out)
    assert {"README.md", "SHA256SUMS", whl.name} <= set(names)
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == \
        sorted(f"{lab.name}.ipynb" for lab in LABS)
    assets = [n for n in names if n.startswith("assets/")]
    # The offline dataset's assets: the course models under synthetic/, the digit models
    # (recipes with "data": "digits") under the offline digits' name.
    assert assets and all(re.fullmatch(r"assets/(synthetic|digits)/smoke/[\w.-]+\.pt", n)
                          for n in assets), assets
    from labsupport import assets as course_assets

    assert sorted(Path(n).stem for n in assets) == sorted(course_assets.list_assets())
    assert len(names) == 3 + len(LABS) + len(assets), names
    # What the command says: where the bundle is, the wheel's sha256, where to host it.
    sha = wheel.sha256_file(whl)
    assert f"wrote {out}/" in built.output and sha in built.output
    assert f"Host {out}/ at {out.as_uri()}/" in built.output
    # The release ran in a scratch nbgrader root: the course's grading/ is untouched.
    assert sorted(p.name for p in (built.course / "grading").iterdir()) == ["nbgrader_config.py"]
    # No temporary folder is left next to the bundle.
    assert sorted(p.name for p in out.parent.iterdir()) == ["student"]
    readme = (out / "README.md").read_text()
    for needed in (whl.name, "LABSUPPORT_CACHE", "Colab", f"pip install ./{whl.name}", sha):
        assert needed in readme


@pytest.mark.slow
def test_checksums_cover_every_file_and_match(built, tmp_path):
    listed = [line.split("  ", 1)[1] for line in
              (built.out / "SHA256SUMS").read_text().splitlines()]
    files = sorted(p.relative_to(built.out).as_posix() for p in built.out.rglob("*")
                   if p.is_file() and p.name != "SHA256SUMS")
    assert sorted(listed) == files
    assert bundle.verify_checksums(built.out) == []
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=built.out, check=True)
    copy = shutil.copytree(built.out, tmp_path / "copy")
    with open(copy / "README.md", "a") as handle:
        handle.write("tampered\n")
    (copy / "extra.txt").write_text("x")
    assert bundle.verify_checksums(copy) == ["not listed: extra.txt",
                                             "sha256 differs: README.md"]


@pytest.mark.slow
def test_notebooks_pin_the_bundled_wheel(built):
    whl = bundle_wheel(built.out)
    pinned = wheel.StudentWheel(whl, wheel.sha256_file(whl), whl.name.split("-")[1])
    for path in (built.out / "notebooks").glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        first = next(c for c in notebook.cells if c.cell_type == "code")
        assert first.source == colab.colab_cell(built.out.as_uri(), pinned), path.name


# --------------------------------------------------------------------------------------
# The leak scan


def _public_and_secret_lines() -> tuple[set[str], dict[str, str]]:
    """Lines of the labs a student may see, and secret line -> where it comes from."""
    public: set[str] = set()
    secret: dict[str, str] = {}
    for lab in LABS:
        for cell in to_notebook(lab).cells:
            regions = SOLUTION_REGION.findall(cell.source) + HIDDEN_REGION.findall(cell.source)
            rest = HIDDEN_REGION.sub("", SOLUTION_REGION.sub("", cell.source))
            public.update(line.strip() for line in rest.splitlines())
            for region in regions:
                for line in region.splitlines():
                    secret.setdefault(line.strip(), f"{lab.source.name} (solution/hidden test)")
    # Planted bugs' replacement text. (tests/alternatives and the planted files' WRAPPERS are
    # other ways to answer, written for the tests; their lines are common idioms that the
    # package shares, so they are covered by the file-copy check of tests/ instead.)
    for path in sorted(PLANTED.glob("*.py")):
        for _, _, text in demo.load_planted(path).values():
            for line in text.splitlines():
                secret.setdefault(line.strip(), f"tests/{path.parent.name}/{path.name}")
    # A line is secret when students see it nowhere: not as a line, nor inside a longer
    # line (a hidden test may repeat a visible assertion without its message).
    seen = "\n".join(public)
    secret = {line: where for line, where in secret.items()
              if len(line) >= TRIVIAL and line not in seen}
    return public, secret


def _contents(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of a bundle file, of its zip members (wheel, model files), and of its
    notebook cells (JSON escapes quotes)."""
    data = path.read_bytes()
    found = [(path.name, data)]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            found += [(f"{path.name}!{n}", archive.read(n)) for n in archive.namelist()]
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        found += [(f"{path.name} cell {i}", cell.source.encode())
                  for i, cell in enumerate(notebook.cells)]
    return found


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Lines of solution or hidden-test regions that also occur in the student layer as common
#: idioms, not as an answer: the scan does not count them in the package's modules.
GENERIC_IN_PACKAGE = {
    "device = next(model.parameters()).device",
    "generator = torch.Generator().manual_seed(seed)",
    "if transform is not None:",
    "loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)",
}
#: Known finding, for the labs' owners to settle: the student layer holds code that answers
#: graded tasks (labsupport.backdoor's triggers and poisoning answer Lab 5's tasks;
#: labsupport.checks.free_at.train_standard_reference answers Lab 1's standard_train). They
#: refuse to run inside a student's answer (labsupport.answers), but their source ships in
#: the wheel. test_answer_code_the_wheel_ships_is_withheld checks each is withheld (the
#: issue allows a kept implementation if calling it from a student's answer fails).
KNOWN_PACKAGE_ANSWERS = {
    "mask, pattern = torch.zeros(1, h, w), torch.zeros(c, h, w)",
    "board = checkerboard(size)",
    "return ((idx[:, None] + idx[None, :]) % 2 == 0).float()",
    'if eligible == "non-target":',
    "if n_poison > len(candidates):",
    "loss = F.cross_entropy(model(x), y)",
}


def leak_scan(folder: Path) -> list[tuple[str, str]]:
    """Every finding in the bundle at ``folder``: (where, what), where is ``file`` or
    ``file!member`` (zip members) or ``file cell N`` (notebook cells)."""
    _, secret = _public_and_secret_lines()
    assert len(secret) > 20, "the scan found almost no solution lines: is the regex stale?"
    instructor = {_sha(p.read_bytes()): p.name
                  for p in (REPO / "labsupport" / "instructor").rglob("*.py")}
    test_files = {_sha(p.read_bytes()): p.relative_to(REPO).as_posix()
                  for p in (REPO / "tests").rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts and p.stat().st_size >= 64}
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        for name, data in _contents(path):
            found += [(name, f"marker {m!r}") for m in MARKERS if m.encode() in data]
            found += [(name, f"{line!r} from {where}") for line, where in secret.items()
                      if line.encode() in data]
            member = name.split("!", 1)[1] if "!" in name else ""
            if member.startswith(("labsupport/instructor", "tests/", "notebooks/")) or \
                    "conftest" in member or member.endswith("entry_points.txt"):
                found.append((name, "an instructor, test or notebook source file"))
            if member.endswith(".py") and re.search(
                    rb"^\s*(from|import)\s+(labsupport\.instructor|\.+instructor)\b", data,
                    re.M):
                found.append((name, "imports the instructor layer"))
            if _sha(data) in instructor:
                found.append((name, f"a copy of labsupport/instructor/{instructor[_sha(data)]}"))
            if _sha(data) in test_files:
                found.append((name, f"a copy of {test_files[_sha(data)]}"))
    return found


def _in_package(where: str, what: str, lines: set[str]) -> bool:
    return ".whl!labsupport/" in where and any(what.startswith(repr(line)) for line in lines)


@pytest.mark.slow
def test_leak_scan(built):
    found = leak_scan(built.out)
    leaks = [f"{where}: {what}" for where, what in found
             if not _in_package(where, what, GENERIC_IN_PACKAGE | KNOWN_PACKAGE_ANSWERS)]
    assert not leaks, "\n".join(leaks)


def _enclosing_functions(line: str) -> list[object]:
    """The student-layer top-level functions whose source holds ``line``."""
    import ast
    import importlib

    package = REPO / "labsupport"
    found = []
    for path in sorted(package.rglob("*.py")):
        if "instructor" in path.relative_to(package).parts:
            continue
        text = path.read_text()
        if line not in text:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(name)
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and line in ast.get_source_segment(text, node):
                found.append(getattr(module, node.name))
    return found


def test_answer_code_the_wheel_ships_is_withheld():
    """The package keeps some implementations of graded tasks (later labs build models with
    them); each one that ships must refuse to run inside a student's answer."""
    for line in sorted(KNOWN_PACKAGE_ANSWERS - {"loss = F.cross_entropy(model(x), y)"}):
        owners = _enclosing_functions(line)
        assert owners, f"{line!r} no longer in the package: drop it from KNOWN_PACKAGE_ANSWERS"
        unguarded = [f"{o.__module__}.{o.__qualname__}" for o in owners
                     if not hasattr(o, "__withheld_task__")]
        assert not unguarded, f"{line!r} ships in {unguarded}, which are not withheld"


def test_leak_scan_catches_a_leak(tmp_path):
    """The scan is not vacuous: a solution line, a marker, an instructor module and a test
    file hidden in a folder are all found."""
    _, secret = _public_and_secret_lines()
    line = next(iter(secret))
    (tmp_path / "notes.txt").write_text(f"x = 1\n    {line}\n### BEGIN HIDDEN TESTS\n")
    cli_module = REPO / "labsupport" / "instructor" / "cli.py"
    with zipfile.ZipFile(tmp_path / "pkg.whl", "w") as archive:
        archive.writestr("labsupport/instructor/cli.py", cli_module.read_bytes())
        archive.writestr("labsupport/x.py", "from labsupport.instructor import grading\n")
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "copied.py")
    found = "\n".join(f"{where}: {what}" for where, what in leak_scan(tmp_path))
    assert f"notes.txt: {line!r}" in found
    assert "notes.txt: marker '### BEGIN HIDDEN TESTS'" in found
    assert "pkg.whl!labsupport/instructor/cli.py: an instructor" in found
    assert "pkg.whl!labsupport/instructor/cli.py: a copy of labsupport/instructor/cli.py" in found
    assert "pkg.whl!labsupport/x.py: imports the instructor layer" in found
    assert "copied.py: a copy of tests/conftest.py" in found


# --------------------------------------------------------------------------------------
# Installing the wheel


SETUP_SCRIPT = r'''
import importlib.util, json, sys
notebook = json.load(open(sys.argv[1]))
code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"]) for c in code}
namespace = {}
exec("".join(code[0]["source"]), namespace)  # the Colab cell: nothing outside Colab
exec(cells["parameters"], namespace)
namespace.update(profile="smoke", dataset="synthetic")  # as papermill would inject them
exec(cells["setup"], namespace)  # the lab's imports and set-up
import labsupport
from labsupport.assets import load_asset
model = load_asset(sys.argv[2], dataset=namespace["DATA"], profile=namespace["PROFILE"],
                   device="cpu")
print("RESULT " + json.dumps({
    "file": labsupport.__file__, "version": labsupport.__version__,
    "instructor": importlib.util.find_spec("labsupport.instructor") is not None,
    "profile": namespace["PROFILE"], "asset_sha256": model.asset_meta["sha256"],
    "asset_dataset": model.asset_meta["dataset"]}))
'''


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                          capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs_a_release_setup(built, tmp_path):
    import torch

    out = built.out
    whl = bundle_wheel(out)
    # The requirement exactly as the Colab cell has it (its URL is the bundle's folder here).
    lab = next(lab for lab in LABS if "load_asset(" in lab.source.read_text())
    release = out / "notebooks" / f"{lab.name}.ipynb"
    cell = next(c for c in nbformat.read(release, as_version=4).cells if c.cell_type == "code")
    requirement = re.search(r'"(labsupport @ [^"]+)"', cell.source)[1]
    assert requirement.endswith(f"#sha256={wheel.sha256_file(whl)}")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # pip checks the pinned sha256: another hash is refused, the bundle's is installed.
    tampered = requirement[: -64] + "0" * 64
    refused = _pip(python, "install", "--no-deps", "--no-index", tampered)
    assert refused.returncode != 0 and "HASHES" in refused.stdout + refused.stderr
    installed = _pip(python, "install", "--no-deps", "--no-index", requirement)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # torch and friends come from the course environment, listed last on sys.path by a plain
    # path line (not site.addsitedir: the checkout's editable-install finder must stay out,
    # so nothing the wheel lacks can be imported from the checkout).
    course_site = Path(torch.__file__).resolve().parents[1]
    assert course_site != site
    (site / "zz-course-env.pth").write_text(f"{course_site}\n")

    cache = tmp_path / "cache"
    shutil.copytree(out / "assets", cache / "assets")  # what the student README says to do
    # A course-dataset model (the release's setup cell loads the course data, not digits).
    asset = sorted((cache / "assets" / "synthetic").rglob("*.pt"))[0]
    before = wheel.sha256_file(asset)
    script = tmp_path / "setup_cell.py"
    script.write_text(SETUP_SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NBGRADER_EXECUTION", "LABSUPPORT_MANIFEST",
                        "LABSUPPORT_OUTPUT", colab.BUNDLE_URL_ENV)}
    env.update(LABSUPPORT_CACHE=str(cache), LABSUPPORT_PROGRESS="0", LABSUPPORT_DEVICE="cpu",
               MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([str(python), str(script), str(release), asset.stem], cwd=work,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert Path(result["file"]).resolve().is_relative_to(site.resolve())  # the wheel's copy
    assert not str(result["file"]).startswith(str(REPO))
    assert result["version"] == whl.name.split("-")[1]
    assert result["instructor"] is False
    assert result["profile"] == "smoke" and result["asset_dataset"] == "synthetic"
    # The shipped file was loaded (checksum verified by load_model), not rebuilt.
    assert "building" not in run.stdout and "rebuilding" not in run.stdout, run.stdout
    assert wheel.sha256_file(asset) == before
    assert result["asset_sha256"] == load_model(asset)[1]["sha256"]


# --------------------------------------------------------------------------------------
# The command: replace, refuse, never leave half a bundle


@pytest.mark.slow
def test_rebuild_replaces_and_a_failure_leaves_no_bundle(built, tmp_path, monkeypatch):
    out = tmp_path / "student"
    with course_env(built.course, built.cache), contextlib.redirect_stdout(io.StringIO()):
        shutil.copytree(built.out, out)
        (out / "stale.txt").write_text("from an earlier bundle")
        assert cli.main(["student-bundle", LABS[0].name, "--out", str(out),
                         "--profile", "smoke"]) == 0
        assert not (out / "stale.txt").exists()
        assert [p.name for p in (out / "notebooks").iterdir()] == [f"{LABS[0].name}.ipynb"]
        assert bundle.verify_checksums(out) == []

        def fail(*args, **kwargs):
            raise RuntimeError("asset build failed")

        monkeypatch.setattr(bundle, "_assets", fail)
        with pytest.raises(RuntimeError, match="asset build failed"):
            cli.main(["student-bundle", LABS[0].name, "--out", str(out), "--profile", "smoke"])
    assert not out.exists()  # cleared first; the half-written copy is gone too
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_bundle_is_never_cleared(tmp_path, capsys):
    course = scratch_course(tmp_path / "course", "https://course.test/tml", LABS[:1])
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with course_env(course, tmp_path / "cache"):
        assert cli.main(["student-bundle", "--out", str(precious)]) == 2
    assert "is not a student bundle" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "do not delete"
