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
