"""The student layer (what notebooks import) never imports the instructor's layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "labsupport"
STUDENT_MODULES = sorted(
    p for p in PACKAGE.rglob("*.py") if "instructor" not in p.relative_to(PACKAGE).parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_student_module_names_the_instructor_layer():
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in _imports(p) if "instructor" in n)
                 for p in STUDENT_MODULES}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_importing_the_student_layer_loads_no_instructor_code():
    modules = [".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
               for p in STUDENT_MODULES]
    modules = [m.removesuffix(".__init__") for m in modules]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('labsupport.instructor')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
