"""A papermill `smoke` run of every lab's source completes and writes results.json and
figures (PDF and PNG) under build/<lab>/ (slow)."""

from __future__ import annotations

import json

import nbformat
import pytest

from labsupport.instructor.runs import run_lab

from .conftest import lab_params
from .lab_outputs import CHECKS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lab", lab_params())
def test_smoke_run_writes_results_and_figures(lab, tmp_path):
    out = run_lab(lab, profile="smoke", dataset="synthetic", build_root=tmp_path)
    assert out == (tmp_path / lab.name).resolve()
    executed = nbformat.read(out / f"{lab.name}.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["profile"] == "smoke"
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    results = json.loads((out / "results.json").read_text())
    assert results["lab"] == lab.name
    # A digits lab (lab3) runs on the offline dataset's digits counterpart.
    assert results["profile"] == "smoke" and results["dataset"] in ("synthetic", "digits")
    assert {"device", "seed", "results"} <= set(results)
    pdfs, pngs = sorted(out.glob("*.pdf")), sorted(out.glob("*.png"))
    assert pdfs and [p.stem for p in pdfs] == [p.stem for p in pngs], (pdfs, pngs)
    if lab.name in CHECKS:  # what this lab promises to save besides (tests/course/lab_outputs.py)
        CHECKS[lab.name](results, out)
