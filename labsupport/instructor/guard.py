"""In-kernel integrity guard of the autograder (imported inside the grading sandbox only).

Student code runs in the same Python process as the tests, so it can, in principle, change
anything the tests rely on. The executor calls :func:`snapshot` before the first cell a
student wrote (after the lab's locked setup cells), and :func:`restore` before every test
cell. ``restore``
undoes what it can see and reports it:

- IPython hooks: input and AST transformers, ``pre_run_cell``/``pre_execute`` callbacks,
  methods of the shell that run a cell;
- the package the tests use: every attribute of every ``labsupport`` module, the modules in
  ``sys.modules``, the code objects of their functions;
- the comparison functions tests call (``torch``, ``numpy``, ``math``, ``builtins``);
- tracing hooks (``sys.settrace``/``setprofile``) and import hooks (``sys.meta_path``);
- the names the instructor's locked cells bound in the notebook (``assert_close``, the
  fixtures module, ...): :func:`mark` and :func:`trust` around every locked cell record them.

This cannot be complete: code in the same process can also reach the snapshot itself.
The autograder therefore also scans every student cell statically
(:mod:`labsupport.instructor.scan`) and flags what it finds for review.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import FunctionType, ModuleType
from typing import Any

_STATE: dict[str, Any] = {}
#: Modules whose attributes the tests rely on, beyond the labsupport package itself.
WATCHED = ("builtins", "math", "torch", "torch.testing", "torch.nn.functional", "numpy",
           "numpy.testing")
#: Watched too when the lab has imported them before the first student cell (slow to import).
WATCHED_IF_LOADED = ("scipy.stats", "statsmodels.stats.proportion")
SHELL_METHODS = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell",
                 "should_run_async", "user_expressions")


def _student_layer() -> list[str]:
    import labsupport

    names = ["labsupport"]
    for info in pkgutil.walk_packages(labsupport.__path__, "labsupport."):
        if not info.name.startswith("labsupport.instructor"):
            names.append(info.name)
    return names


def _module_state(module: ModuleType) -> dict[str, Any]:
    state = dict(vars(module))
    codes = {name: obj.__code__ for name, obj in state.items() if isinstance(obj, FunctionType)}
    methods = {}
    for name, obj in state.items():
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for attr, value in list(vars(obj).items()):
                methods[(name, attr)] = value
                if isinstance(value, FunctionType):
                    codes[f"{name}.{attr}"] = value.__code__
    return {"dict": state, "codes": codes, "methods": methods}


def snapshot() -> str:
    """Record the state the tests rely on (call before any student code). Returns "ok"."""
    modules = {}
    loaded = [name for name in WATCHED_IF_LOADED if name in sys.modules]
    for name in (*_student_layer(), *WATCHED, *loaded):
        try:
            modules[name] = importlib.import_module(name)
        except Exception:  # noqa: BLE001 (an optional module; nothing to watch)
            continue
    _STATE["modules"] = modules
    _STATE["state"] = {name: _module_state(m) for name, m in modules.items()}
    shell = _shell()
    if shell is not None:
        _STATE["shell"] = {
            "input_transformers_cleanup": list(shell.input_transformers_cleanup),
            "input_transformers_post": list(shell.input_transformers_post),
            "ast_transformers": list(shell.ast_transformers),
            "callbacks": {event: list(callbacks)
                          for event, callbacks in shell.events.callbacks.items()},
            "class_methods": {name: getattr(type(shell), name, None) for name in SHELL_METHODS},
        }
    _STATE["meta_path"] = list(sys.meta_path)
    return "ok"


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _restore_modules(found: list[str]) -> None:
    for name, module in _STATE.get("modules", {}).items():
        if sys.modules.get(name) is not module:
            found.append(f"sys.modules[{name!r}] was replaced")
            sys.modules[name] = module
        saved = _STATE["state"][name]
        current = vars(module)
        for attr, value in saved["dict"].items():
            if current.get(attr, _MISSING) is not value:
                found.append(f"{name}.{attr} was replaced")
                setattr(module, attr, value)
        if name.startswith("labsupport"):
            for attr in [a for a in current if a not in saved["dict"]]:
                if not attr.startswith("__") and not isinstance(current[attr], ModuleType):
                    found.append(f"{name}.{attr} was added")
                    delattr(module, attr)
        for (cls, attr), value in saved["methods"].items():
            klass = saved["dict"][cls]
            if vars(klass).get(attr, _MISSING) is not value:
                found.append(f"{name}.{cls}.{attr} was replaced")
                setattr(klass, attr, value)
        for qualname, code in saved["codes"].items():
            owner, _, attr = qualname.partition(".")
            obj = saved["dict"].get(owner)
            function = vars(obj).get(attr) if attr and isinstance(obj, type) else obj
            if isinstance(function, FunctionType) and function.__code__ is not code:
                found.append(f"the code of {name}.{qualname} was replaced")
                function.__code__ = code


def _restore_shell(found: list[str]) -> None:
    shell, saved = _shell(), _STATE.get("shell")
    if shell is None or saved is None:
        return
    for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
        if list(getattr(shell, attr)) != saved[attr]:
            found.append(f"IPython {attr} were changed")
            setattr(shell, attr, list(saved[attr]))
    for event, callbacks in shell.events.callbacks.items():
        if list(callbacks) != saved["callbacks"].get(event, []):
            found.append(f"IPython {event} callbacks were changed")
            callbacks[:] = saved["callbacks"].get(event, [])
    for name, original in saved["class_methods"].items():
        if name in vars(shell):
            found.append(f"IPython shell.{name} was overridden")
            delattr(shell, name)
        if original is not None and getattr(type(shell), name, None) is not original:
            found.append(f"IPython {type(shell).__name__}.{name} was replaced")
            setattr(type(shell), name, original)


def mark() -> str:
    """Before a locked (instructor's) cell: remember the notebook's names as they are."""
    shell = _shell()
    if shell is not None:
        _STATE["before"] = dict(shell.user_ns)
    return ""


def trust() -> str:
    """After a locked cell: the names it (re)bound are the instructor's; tests rely on them."""
    shell, before = _shell(), _STATE.pop("before", None)
    if shell is None or before is None:
        return ""
    trusted = _STATE.setdefault("names", {})
    for name, value in shell.user_ns.items():
        if not name.startswith("_") and before.get(name, _MISSING) is not value:
            trusted[name] = value
    return ""


def _restore_names(found: list[str]) -> None:
    shell = _shell()
    if shell is None:
        return
    for name, value in _STATE.get("names", {}).items():
        if shell.user_ns.get(name, _MISSING) is not value:
            found.append(f"the notebook's name {name!r} was rebound")
            shell.user_ns[name] = value


def restore() -> str:
    """Undo changes to what the tests rely on; return what was found ("" when nothing)."""
    found: list[str] = []
    _restore_modules(found)
    _restore_names(found)
    _restore_shell(found)
    if sys.gettrace() is not None:
        found.append("a trace function was set (sys.settrace)")
        sys.settrace(None)
    if sys.getprofile() is not None:
        found.append("a profile function was set (sys.setprofile)")
        sys.setprofile(None)
    saved_path = _STATE.get("meta_path")
    if saved_path is not None and list(sys.meta_path) != saved_path:
        found.append("import hooks (sys.meta_path) were changed")
        sys.meta_path[:] = saved_path
    return "; ".join(dict.fromkeys(found))


class _Missing:
    pass


_MISSING = _Missing()
