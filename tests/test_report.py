"""Figures and results.json: stable names, provenance, atomic writes."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labsupport import report


@pytest.fixture()
def outdir(tmp_path, monkeypatch):
    monkeypatch.setenv(report.OUTPUT_ENV, str(tmp_path / "build" / "lab1"))
    return tmp_path / "build" / "lab1"


def test_save_figure_writes_pdf_and_png_with_the_given_stem(outdir):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = report.save_figure(fig, "acc-vs-radius.pdf", caption="profile smoke")
    plt.close(fig)
    assert [p.name for p in paths] == ["acc-vs-radius.pdf", "acc-vs-radius.png"]
    assert (outdir / "acc-vs-radius.pdf").read_bytes().startswith(b"%PDF")
    assert (outdir / "acc-vs-radius.png").read_bytes().startswith(b"\x89PNG")


def test_pdf_bytes_are_reproducible(outdir):
    def draw() -> bytes:
        fig, ax = plt.subplots()
        ax.plot(np.arange(5), np.arange(5) ** 2)
        report.save_figure(fig, "same")
        plt.close(fig)
        return (outdir / "same.pdf").read_bytes()

    assert draw() == draw()


@pytest.mark.parametrize("name", ["", "../escape", "a b", "dir/fig"])
def test_bad_figure_names_are_rejected(outdir, name):
    fig = plt.figure()
    with pytest.raises(ValueError, match="plain file stem"):
        report.save_figure(fig, name)
    plt.close(fig)


def test_results_json_carries_numbers_and_provenance(outdir):
    path = report.write_results(
        {"acc": np.float32(0.5), "curve": torch.tensor([1.0, 0.5]), "nested": {1: (2, 3)}},
        lab="lab1", profile="smoke", dataset="synthetic", seed=3, device=torch.device("cpu"))
    payload = json.loads(path.read_text())
    assert path == outdir / "results.json"
    assert payload["lab"] == "lab1" and payload["profile"] == "smoke"
    assert payload["dataset"] == "synthetic" and payload["seed"] == 3
    assert payload["device"].startswith("cpu")
    assert payload["results"] == {"acc": 0.5, "curve": [1.0, 0.5], "nested": {"1": [2, 3]}}
    assert not list(outdir.glob(".*.tmp")), "no temporary file is left behind"


def test_caption_names_profile_dataset_device_and_seed():
    text = report.caption(profile="cpu", dataset="synthetic", seed=0, device=torch.device("cpu"))
    assert "profile cpu" in text and "synthetic" in text and "cpu (" in text and "seed 0" in text


def test_results_beside_the_notebook_are_named_per_lab(tmp_path, monkeypatch):
    """Labs run in one folder (no $LABSUPPORT_OUTPUT) must not overwrite each other's."""
    monkeypatch.delenv(report.OUTPUT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    paths = [report.write_results({"n": i}, lab=lab, profile="smoke", dataset="synthetic",
                                  seed=0, device=torch.device("cpu"))
             for i, lab in enumerate(("lab1", "lab2"))]
    assert [p.name for p in paths] == ["lab1-results.json", "lab2-results.json"]
    assert [json.loads((tmp_path / p.name).read_text())["results"]["n"] for p in paths] == [0, 1]
    with pytest.raises(ValueError, match="plain name"):
        report.results_name("../lab1")


def test_save_table_writes_a_csv_beside_the_figures(outdir):
    path = report.save_table([{"model": "standard", "acc": np.float32(0.5)},
                              {"model": "free m=4", "acc": 0.25}], "free-at")
    assert path == outdir / "free-at.csv"
    assert path.read_text() == "model,acc\nstandard,0.5\nfree m=4,0.25\n"
    with pytest.raises(ValueError, match="columns"):
        report.save_table([{"a": 1}, {"b": 2}], "bad")
    with pytest.raises(ValueError, match="non-empty"):
        report.save_table([], "empty")


def test_save_weights_round_trips(outdir):
    model = torch.nn.Linear(3, 2)
    path = report.save_weights(model, "lab1-standard")
    assert path == outdir / "trained-models" / "lab1-standard.pt"
    other = torch.nn.Linear(3, 2)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 other.state_dict().values(), strict=True))
