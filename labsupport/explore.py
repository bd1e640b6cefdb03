"""Exploration views: ipywidgets controls over a figure, or one static figure in batch runs.

A lab passes a ``render(**values)`` function that draws one matplotlib figure for one choice
of values, and one sequence of values per control::

    explore(render, eps=[0, 2 / 255, 4 / 255, 8 / 255], model=["standard", "free"])

In a live notebook (JupyterLab, Colab) the student gets a slider or drop-down per control and
the figure is redrawn on every change. Under papermill (``labsupport run``), the autograder
(``NBGRADER_EXECUTION``), with ``LABSUPPORT_BATCH=1`` set, outside an IPython kernel, or when
ipywidgets is missing, the view degrades to one static figure drawn at ``static`` (default:
each control's first value), so an executed notebook and its PDF export still show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .runtime import under_autograder

#: Set to a non-empty value other than ``0`` to force static views (batch runs set it).
BATCH_ENV = "LABSUPPORT_BATCH"

__all__ = ["BATCH_ENV", "explore", "interactive_available", "static_values"]


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def interactive_available() -> bool:
    """True when widgets can be shown: a live kernel, ipywidgets installed, not a batch run."""
    if under_autograder() or os.environ.get(BATCH_ENV, "0") not in ("", "0"):
        return False
    if not _in_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _check_controls(controls: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    if not controls:
        raise ValueError("explore() needs at least one control, e.g. explore(render, eps=[0.0, 0.1]).")
    checked: dict[str, list[Any]] = {}
    for name, values in controls.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"control {name!r} must be a list or tuple of values, got "
                            f"{type(values).__name__}; e.g. {name}=[0.0, 0.1, 0.2].")
        if len(values) == 0:
            raise ValueError(f"control {name!r} has no values; give at least one.")
        checked[name] = list(values)
    return checked


def static_values(controls: dict[str, Sequence[Any]],
                  static: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values the static fallback draws: ``static`` where given, else each first value."""
    checked = _check_controls(controls)
    static = dict(static or {})
    unknown = set(static) - set(checked)
    if unknown:
        raise ValueError(f"static names unknown controls {sorted(unknown)}; "
                         f"controls are {sorted(checked)}.")
    return {name: static.get(name, values[0]) for name, values in checked.items()}


def _widget(name: str, values: list[Any], value: Any) -> Any:
    import ipywidgets as widgets

    options = [(str(v), v) for v in values]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 1:
        return widgets.SelectionSlider(options=options, value=value, description=name,
                                       continuous_update=False)
    return widgets.Dropdown(options=options, value=value, description=name)


def explore(render: Callable[..., Any], *, static: dict[str, Any] | None = None,
            **controls: Sequence[Any]) -> Any:
    """Show ``render(**values)`` with one widget per control, or statically in batch runs.

    Returns the widget box in a live notebook, else the static figure (already displayed
    when inside IPython; the caller may pass it to ``report.save_figure``).
    """
    if not callable(render):
        raise TypeError("explore(render, ...): render must be a function returning a figure.")
    values = static_values(controls, static)
    checked = _check_controls(controls)
    if not interactive_available():
        figure = render(**values)
        if _in_kernel() or _ipython_active():
            from IPython.display import display

            display(figure)
            _close(figure)
        return figure

    import ipywidgets as widgets
    from IPython.display import display

    controls_ui = {name: _widget(name, checked[name], values[name]) for name in checked}
    output = widgets.Output()

    def redraw(**chosen: Any) -> None:
        with output:
            output.clear_output(wait=True)
            figure = render(**chosen)
            display(figure)
            _close(figure)

    widgets.interactive_output(redraw, controls_ui)
    box = widgets.VBox([widgets.HBox(list(controls_ui.values())), output])
    display(box)
    return box


def _ipython_active() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _close(figure: Any) -> None:
    """Close a pyplot-managed figure so the inline backend does not draw it a second time."""
    try:
        import matplotlib.pyplot as plt

        plt.close(figure)
    except Exception:  # noqa: BLE001 - a figure not managed by pyplot needs no closing
        pass
