"""Static scan of a submission's own code for what an honest answer never needs.

Every code cell the student wrote (answer cells and cells they added; locked cells are
restored from the source anyway) is parsed (IPython magics and ``!`` shell lines are
translated first) and searched for constructs that reach into the grader: the IPython shell,
input or AST transformers, ``sys.modules``, replacing attributes of imported modules (e.g.
the test helpers in ``labsupport.checks``), private names of ``labsupport``, processes,
``exec``/``eval``, frame inspection, reading files by absolute or parent path, sockets,
``os._exit`` and signal handlers. A finding is a *flag for review*, not a score: the
sandbox and the in-kernel guard decide what the code could actually do.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from .cells import grade_id, nbgrader_meta

#: Names whose mere use is suspicious in an answer (with the reason shown to the grader).
NAMES = {
    "get_ipython": "uses the IPython shell (get_ipython)",
    "__import__": "imports through __import__",
    "exec": "executes generated code (exec)",
    "eval": "evaluates generated code (eval)",
    "compile": "compiles generated code (compile)",
    "globals": "reads or changes the global namespace (globals())",
    "__builtins__": "reaches into builtins",
    "setattr": "sets attributes dynamically (setattr)",
}
#: Modules an answer has no reason to import.
MODULES = {
    "subprocess": "starts processes (subprocess)",
    "multiprocessing": "starts processes (multiprocessing)",
    "ctypes": "uses ctypes",
    "socket": "opens sockets",
    "importlib": "imports dynamically (importlib)",
    "inspect": "inspects frames or source code (inspect)",
    "gc": "walks the garbage collector (gc)",
    "builtins": "changes builtins",
    "signal": "installs signal handlers",
    "pty": "opens a terminal (pty)",
    "shutil": "copies or removes files (shutil)",
    "IPython": "uses IPython internals",
    "nbformat": "reads notebooks (nbformat)",
    "nbgrader": "uses nbgrader",
    "sqlite3": "opens a database (sqlite3)",
    "labsupport.instructor": "uses the instructor's tooling",
}
#: Attribute names that reach into the grader.
ATTRIBUTES = {
    "input_transformers_cleanup": "installs an IPython input transformer",
    "input_transformers_post": "installs an IPython input transformer",
    "ast_transformers": "installs an IPython AST transformer",
    "register_magic_function": "defines IPython magics",
    "events": "registers IPython event callbacks",
    "modules": "reaches sys.modules",
    "settrace": "installs a trace function",
    "setprofile": "installs a profile function",
    "meta_path": "installs an import hook",
    "path_hooks": "installs an import hook",
    "_getframe": "inspects the call stack",
    "f_back": "inspects the call stack",
    "f_globals": "inspects the call stack",
    "f_locals": "inspects the call stack",
    "__code__": "rewrites function code",
    "__globals__": "reaches a function's globals",
    "__subclasses__": "walks the class hierarchy",
    "system": "runs a shell command",
    "popen": "runs a shell command",
    "fork": "forks the process",
    "kill": "sends signals",
    "_exit": "ends the process (os._exit)",
    "execv": "replaces the process",
    "execl": "replaces the process",
    "spawnv": "starts processes",
    "chdir": "changes the working folder",
}
#: Imported modules whose attributes an answer must never replace.
PROTECTED_ROOTS = {"labsupport", "torch", "numpy", "np", "scipy", "math", "builtins", "sys",
                   "os", "statsmodels", "IPython", "nbformat", "F", "nn", "fx"}


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: the cell it is in, its line, and what it does."""

    cell: str
    line: int
    reason: str


def _python_source(source: str) -> str:
    """The cell as plain Python: IPython magics and shell escapes translated."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 (IPython missing or the cell is broken: scan as is)
        return source


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _path_literal(node: ast.AST) -> bool:
    """A string that names a file outside the submission: absolute, home or ``../``."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    text = node.value.strip()
    return (len(text) > 1 and text.startswith(("/", "~/")) and " " not in text) or (
        ".." in text.replace("\\", "/").split("/"))


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self.aliases: set[str] = set()

    def add(self, node: ast.AST, reason: str) -> None:
        self.found.append((getattr(node, "lineno", 0), reason))

    def _module(self, node: ast.AST, name: str) -> None:
        for module, reason in MODULES.items():
            if name == module or name.startswith(module + "."):
                self.add(node, reason)
        if name.startswith("labsupport") and any(part.startswith("_")
                                                 for part in name.split(".")):
            self.add(node, "imports a private part of labsupport")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(node, alias.name)
            self.aliases.add((alias.asname or alias.name).split(".")[0])
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._module(node, module)
        for alias in node.names:
            self._module(node, f"{module}.{alias.name}")
            if module.startswith("labsupport") and alias.name.startswith("_"):
                self.add(node, "imports a private name of labsupport")
            if module == "os" and alias.name in ATTRIBUTES:
                self.add(node, ATTRIBUTES[alias.name])
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in NAMES:
            self.add(node, NAMES[node.id])
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ATTRIBUTES and _root_name(node) in {"sys", "os", "ip", "shell",
                                                             "self", None} | self.aliases:
            self.add(node, ATTRIBUTES[node.attr])
        root = _root_name(node)
        if root and node.attr.startswith("_") and not node.attr.startswith("__") and (
                root in {"labsupport", "bd", "fx", "checks"}):
            self.add(node, f"uses the private name {node.attr} of labsupport")
        self.generic_visit(node)

    def _target(self, target: ast.AST) -> None:
        if isinstance(target, ast.Attribute | ast.Subscript):
            root = _root_name(target)
            if root in PROTECTED_ROOTS or (root in self.aliases and root not in {"self"}):
                self.add(target, f"replaces an attribute of the module {root}")
        elif isinstance(target, ast.Name) and target.id.startswith("__") and target.id.endswith(
                "__"):
            self.add(target, f"rebinds {target.id}")
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._target(element)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if _path_literal(node):
            self.add(node, f"names a path outside the submission ({str(node.value)[:60]!r})")


def scan_source(source: str, cell: str = "") -> list[Finding]:
    """Findings in one cell's source (none when the cell does not parse: it just fails)."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return []
    visitor = _Visitor()
    visitor.visit(tree)
    unique = dict.fromkeys(visitor.found)
    return [Finding(cell, line, reason) for line, reason in sorted(unique)]


def student_cells(submission: Any, release: Any) -> list[tuple[str, str]]:
    """(name, source) of every code cell the student wrote: answer cells and added cells
    (a cell whose source is not one of the release's cells). Locked cells are skipped."""
    released = {c.source.strip() for c in release.cells}
    out = []
    for index, cell in enumerate(submission.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        if meta.get("locked") and not meta.get("solution"):
            continue
        if not meta.get("solution") and cell.source.strip() in released:
            continue
        out.append((grade_id(cell) or f"added cell {index}", cell.source))
    return out


def locked_names(release: Any) -> set[str]:
    """Names the release's locked code cells bind at the notebook's top level (imports,
    assignments, functions): test cells rely on them."""
    names: set[str] = set()
    for cell in release.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or meta.get("solution"):
            continue
        names |= _top_level_names(cell.source)
    return names


def _top_level_names(source: str) -> set[str]:
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def scan_notebook(submission: Any, release: Any) -> list[Finding]:
    """Findings in every code cell the student wrote, including names of the instructor's
    cells that a student cell rebinds (re-importing the same module is fine)."""
    protected = locked_names(release)
    findings = []
    for name, source in student_cells(submission, release):
        findings += scan_source(source, name)
        try:
            tree = ast.parse(_python_source(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for rebound in sorted(_top_level_names(ast.unparse(node)) & protected):
                findings.append(Finding(name, getattr(node, "lineno", 0),
                                        f"rebinds {rebound!r}, a name the tests use"))
    return findings
