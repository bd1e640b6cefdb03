"""`labsupport course` ends with one readable table per lab (labsupport.instructor.runs)."""

from __future__ import annotations

import json

from labsupport.instructor.labs import Lab
from labsupport.instructor.runs import format_table, results_table, summarize


def test_results_become_one_table_and_settings():
    results = {"eps": 0.03, "models": {"standard": {"acc": 0.9, "extra": {"pgd": 0.99}},
                                       "free": {"acc": 0.7, "extra": {"pgd": 0.4}}},
               "certified": {"standard": {"0.0": 0.5}, "free": {"0.0": 0.25}},
               "seconds": {"standard": 1.0, "free": 2.0}, "curve": [1, 2, 3]}
    rows, settings = results_table(results)
    assert rows == {"standard": {"acc": 0.9, "extra.pgd": 0.99, "certified 0.0": 0.5,
                                 "seconds": 1.0},
                    "free": {"acc": 0.7, "extra.pgd": 0.4, "certified 0.0": 0.25, "seconds": 2.0}}
    assert settings == {"eps": 0.03, "curve": [1, 2, 3]}
    lines = format_table(rows)
    assert lines[0].split("|")[1:] == [" standard ", " free"]  # transposed: 4 columns > 2 rows
    assert lines[2].split() == ["acc", "|", "0.9", "|", "0.7"]


def test_summarize_prints_a_table_per_lab(tmp_path):
    lab = Lab(number=1, name="lab1", source=tmp_path / "lab1_x.py")
    out = tmp_path / "lab1"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({
        "lab": "lab1", "profile": "smoke", "dataset": "synthetic", "device": "cpu", "seed": 0,
        "results": {"models": {"a": {"acc": 0.5}, "b": {"acc": 0.25}}, "n": 3}}))
    text = summarize(tmp_path, [lab])
    assert "== lab1" in text and "profile smoke" in text
    assert any(line.split() == ["a", "|", "0.5"] for line in text.splitlines())
    assert "settings: n 3" in text
    missing = summarize(tmp_path / "nothing", [lab])
    assert "no results.json" in missing
