"""Does ANP remove BadNets when the paper's conditions are approached? (An experiment, slow.)

Runs Lab 5's own cells at the `cpu` profile (the notebook's parameters, setup, solution and
experiment cells, as ``tests/test_backdoor_science.py`` does), then ANP with the lab's
defaults (eps 0.4, alpha 0.2) on a BadNets model in several settings: the `cpu` model, more
mask iterations, longer training, the `full` width, more training images. For each it
prints one JSON line: clean test accuracy, attack success, the lowest attack success at any
pruning threshold whose test accuracy stays within 5 points of the unpruned model, and the
whole (threshold, accuracy, attack success) curve. Results: ``benchmarks/RESULTS.md``.

    .venv-peers/bin/python benchmarks/anp_conditions.py [--dataset synthetic]

About 10 minutes on two idle CPU cores at the synthetic dataset's sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def curve(lab: dict, model, iters: int) -> list[tuple[float, float, float]]:
    """(threshold, clean accuracy, attack success) after ANP pruning at every threshold."""
    masks = lab["anp_mask"](model, lab["X_CLEAN"], lab["Y_CLEAN"], eps=lab["anp_eps"],
                            alpha=lab["anp_alpha"], iters=iters, lr=lab["anp_lr"],
                            batch_size=lab["SIZES"]["anp_batch"], seed=lab["seed"])
    rows = []
    for threshold in lab["SIZES"]["anp_thresholds"]:
        pruned = lab["anp_prune"](model, masks, threshold)
        success = lab["attack_success_rate"](pruned, lab["X_TEST"], lab["Y_TEST"],
                                             lab["TRIGGERS"]["BadNets"], target=lab["target"])
        rows.append((round(float(threshold), 2),
                     round(lab["evaluate"](pruned, lab["X_TEST"], lab["Y_TEST"]), 3),
                     round(success, 3)))
    return rows


def report(setting: str, lab: dict, model, iters: int | None = None) -> None:
    start = time.perf_counter()
    rows = curve(lab, model, iters or lab["SIZES"]["anp_iters"])
    clean = rows[0][1]
    affordable = [success for _, accuracy, success in rows if accuracy >= clean - 0.05]
    print(json.dumps({"setting": setting, "clean": clean, "attack_success": rows[0][2],
                      "best_within_5_points": min(affordable), "curve": rows,
                      "seconds": round(time.perf_counter() - start)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    args = parser.parse_args()
    os.environ.setdefault("LABSUPPORT_PROGRESS", "0")
    os.environ["LABSUPPORT_OUTPUT"] = tempfile.mkdtemp(prefix="anp-conditions-")
    from test_backdoor_science import run_lab

    lab = run_lab(profile="cpu", dataset=args.dataset)
    sizes = lab["SIZES"]
    report("cpu model", lab, lab["MODELS"]["BadNets"])
    report("cpu model, 1000 mask iterations", lab, lab["MODELS"]["BadNets"], iters=1000)
    x, y, _ = lab["POISONED"]["BadNets"]
    sizes["epochs"] = 12
    report("12 epochs", lab, lab["train_model"](x, y))
    sizes["epochs"] = 4
    sizes["channels"], sizes["hidden"] = (32, 64, 128), 256
    report("full width (32/64/128, hidden 256)", lab, lab["train_model"](x, y))
    sizes["channels"], sizes["hidden"] = (16, 32, 64), 128
    start = lab["SPLITS"]["train"][0]
    big = (lab["DATA"].x_train[start:start + 16_000], lab["DATA"].y_train[start:start + 16_000])
    xb, yb, _ = lab["poison_dataset"](*big, lab["TRIGGERS"]["BadNets"], target=lab["target"],
                                      rate=lab["poison_rate"], seed=lab["seed"])
    report("16000 training images", lab, lab["train_model"](xb, yb))


if __name__ == "__main__":
    main()
