"""The student environment (environment.yml) hides nbgrader's instructor UI in JupyterLab:
Formgrader, Create Assignment and Course List are off, Validate stays on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "student-jupyter-config" / "etc" / "jupyter"
HIDDEN_PLUGINS = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                  "@jupyter/nbgrader:course-list"}
HIDDEN_SERVER = {"nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"}


def test_environment_installs_the_student_config():
    text = (REPO / "environment.yml").read_text()
    assert "./student-jupyter-config" in text


def test_jupyterlab_disables_the_instructor_plugins_and_keeps_validate(monkeypatch):
    pytest.importorskip("jupyterlab_server")
    from jupyterlab_server.config import get_static_page_config

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(CONFIG))
    disabled = get_static_page_config(level="all").get("disabledExtensions", {})
    assert {name for name, off in disabled.items() if off} >= HIDDEN_PLUGINS
    assert not disabled.get("@jupyter/nbgrader:validate-assignment")


def test_jupyter_server_disables_the_instructor_extensions(monkeypatch):
    pytest.importorskip("jupyter_server")
    from jupyter_server.extension.config import ExtensionConfigManager

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(CONFIG))
    # The course's file sorts after nbgrader's own (nbgrader.json), so it wins in one folder.
    ours = sorted((CONFIG / "jupyter_server_config.d").glob("*.json"))
    assert all(p.name > "nbgrader.json" for p in ours), ours
    manager = ExtensionConfigManager(read_config_path=[str(CONFIG)])
    extensions = manager.get_jpserver_extensions()
    assert {name for name in HIDDEN_SERVER if extensions.get(name) is False} == HIDDEN_SERVER
    assert "nbgrader.server_extensions.validate_assignment" not in extensions


def test_plugin_ids_exist_in_nbgrader():
    """The ids match the installed nbgrader's lab extension (a rename would silently unhide)."""
    nbgrader = pytest.importorskip("nbgrader")
    static = Path(nbgrader.__file__).parent / "labextension" / "static"
    if not static.is_dir():
        pytest.skip("nbgrader's lab extension is not installed here")
    text = "".join(p.read_text(errors="ignore") for p in static.glob("*.js"))
    for plugin in HIDDEN_PLUGINS:
        assert f'"{plugin}"' in text, plugin
    assert json.loads((CONFIG / "labconfig" / "page_config.d" / "tml-labs-student.json")
                      .read_text())["disabledExtensions"]
