"""Committed course files are found in a checkout and in a pip-installed package (Colab)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from labsupport import paths

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_assets_are_preferred():
    assert paths.course_asset("manifest.json") == ROOT / "assets" / "manifest.json"


def test_installed_copy_is_used_without_a_checkout(tmp_path, monkeypatch):
    installed = tmp_path / "course_assets"
    (installed / "triggers").mkdir(parents=True)
    (installed / "manifest.json").write_text("{}")
    monkeypatch.setattr(paths, "_CHECKOUT_ASSETS", tmp_path / "no-checkout")
    monkeypatch.setattr(paths, "_INSTALLED_ASSETS", installed)
    assert paths.course_asset("manifest.json") == installed / "manifest.json"
    # A missing file names the checkout path a developer would add.
    assert paths.course_asset("nothing.png") == tmp_path / "no-checkout" / "nothing.png"


def test_every_committed_asset_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["labsupport.course_assets"] == "assets"
    files = [p.relative_to(ROOT / "assets") for p in (ROOT / "assets").rglob("*") if p.is_file()]
    assert files, "assets/ is empty"
    unshipped = []
    for file in files:
        package = ".".join(("labsupport.course_assets", *file.parent.parts))
        patterns = config["package-data"].get(package, [])
        if package not in config["packages"] or not any(
                fnmatch.fnmatch(file.name, pattern) for pattern in patterns):
            unshipped.append(file.as_posix())
    assert not unshipped, f"ship {unshipped} with the package: see [tool.setuptools] in pyproject"
