"""Exploration views: widgets in a live notebook, one static figure in batch runs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from labsupport import explore as ex  # noqa: E402


def _render_recorder(calls):
    def render(eps, model):
        calls.append((eps, model))
        fig, ax = plt.subplots()
        ax.set_title(f"{model} eps={eps}")
        return fig
    return render


def test_batch_run_draws_one_static_figure_at_the_first_values(monkeypatch):
    monkeypatch.setenv(ex.BATCH_ENV, "1")
    calls = []
    figure = ex.explore(_render_recorder(calls), eps=[0.0, 0.1], model=["standard", "free"])
    assert calls == [(0.0, "standard")]
    assert figure.axes[0].get_title() == "standard eps=0.0"


def test_autograder_and_static_choice(monkeypatch):
    monkeypatch.delenv(ex.BATCH_ENV, raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not ex.interactive_available()
    calls = []
    ex.explore(_render_recorder(calls), static={"model": "free"},
               eps=[0.0, 0.1], model=["standard", "free"])
    assert calls == [(0.0, "free")]


def test_outside_a_kernel_is_static(monkeypatch):
    monkeypatch.delenv(ex.BATCH_ENV, raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not ex.interactive_available()  # pytest is not an IPython kernel


def test_live_notebook_gets_one_widget_per_control_and_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(ex, "interactive_available", lambda: True)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    calls = []
    box = ex.explore(_render_recorder(calls), eps=[0.0, 0.1, 0.2], model=["standard", "free"])
    sliders = box.children[0].children
    assert [w.description for w in sliders] == ["eps", "model"]
    assert type(sliders[0]).__name__ == "SelectionSlider"
    assert type(sliders[1]).__name__ == "Dropdown"
    assert calls == [(0.0, "standard")]  # drawn once at start
    sliders[0].value = 0.2
    assert calls[-1] == (0.2, "standard")
    sliders[1].value = "free"
    assert calls[-1] == (0.2, "free")


@pytest.mark.parametrize(("controls", "static", "message"), [
    ({}, None, "at least one control"),
    ({"eps": 0.1}, None, "list or tuple"),
    ({"eps": []}, None, "no values"),
    ({"eps": [0.1]}, {"sigma": 1}, "unknown controls"),
])
def test_bad_controls_say_what_to_do(controls, static, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ex.explore(lambda **_: plt.figure(), static=static, **controls)
