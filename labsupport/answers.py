"""Package code that is also a graded task refuses to run inside a student's own function.

Some tasks have an implementation in the package because other parts need it (the backdoor
toolkit builds later labs' models; the test cells compute reference results). Such a function
is marked :func:`withheld`: it works everywhere (library code, test cells, experiment cells,
pytest) *except* when a function defined in a notebook cell is on the call stack, i.e. when
a student's answer calls it. There it raises :class:`WriteYourOwn`, so wrapping the package
never passes a task's tests. :func:`assert_own` lets a test check that the name a student
defined is their own notebook function, not an alias of the package's.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Code objects compiled from notebook cells: ipykernel (``/tmp/ipykernel_<pid>/<hash>.py``)
#: and terminal IPython (``<ipython-input-N-...>``).
CELL_FILE = re.compile(r"(?:[/\\]ipykernel_\d+[/\\]-?\d+\.py$|^<ipython-input-\d+-)")


class WriteYourOwn(NotImplementedError):
    """A student's function called a package function that implements a graded task."""


def is_cell_code(code: Any) -> bool:
    """Whether ``code`` (a code object) was compiled from a notebook cell."""
    return bool(CELL_FILE.search(getattr(code, "co_filename", "") or ""))


#: Code objects Python (before 3.12) makes for a comprehension and runs at once, inside the
#: frame that defines it: they are that frame's code, not a function of their own (a
#: comprehension at a test cell's top level is top-level code).
INLINE_SCOPES = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>"})


def _student_frame() -> str | None:
    """The name of a notebook-defined function on the stack, if any: the innermost one with
    a name (a ``def``), else the innermost lambda or generator expression.

    A generator expression counts as a function: its frame's caller is whoever consumes it,
    not the code that defined it, so a test cell must not call a withheld function inside
    one (a loop or a list comprehension is fine)."""
    frame = sys._getframe(2)
    found = None
    while frame is not None:
        code = frame.f_code
        if code.co_name not in ("<module>", *INLINE_SCOPES) and is_cell_code(code):
            if not code.co_name.startswith("<"):
                return code.co_name
            found = found or code.co_name
        frame = frame.f_back
    return found


def withheld(task: str) -> Callable[[F], F]:
    """Mark a package function as the implementation of a graded ``task`` (e.g.
    ``"Lab 5, task stamp"``): called from a notebook-defined function, it raises
    :class:`WriteYourOwn` naming the task."""

    def decorate(function: F) -> F:
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = _student_frame()
            if caller is not None:
                raise WriteYourOwn(
                    f"{name} is the answer to {task}, so it is not available inside your "
                    f"own function {caller}(): write your own version (the tests grade "
                    f"yours).")
            return function(*args, **kwargs)

        del guarded.__wrapped__  # no way around the guard through functools' back door
        guarded.__withheld_task__ = task  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def assert_own(function: Any, name: str) -> None:
    """Assert that ``function`` is a function the student wrote in the notebook (not the
    package's implementation, an alias of it, a ``functools.partial`` or a lambda over it)."""
    code = getattr(function, "__code__", None)
    if code is None and isinstance(function, type):
        code = getattr(getattr(function, "__init__", None), "__code__", None)
    assert code is not None and is_cell_code(code), (
        f"{name} must be a function you define in this notebook (def {name}(...): ...), "
        f"not {function!r}.")
