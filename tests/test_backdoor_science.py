"""Lab 5's science, on the offline dataset at the `cpu` profile: what the papers show.

The lab's own code runs here: the notebook's parameters, setup and solution cells, and its
experiment cell that trains the clean model and one model per attack (the package holds no
lab solutions). Expected, as in Gu et al., Chen et al., Turner et al. and Wu & Wang:

- BadNets and Blend reach >= 90% attack success, losing <= 3 points of clean accuracy
  (issue #14's bar for the `cpu` budget);
- the clean-label attack reaches >= 80% attack success;
- ANP's premise (Wu & Wang, Sec. 3): under adversarial neuron perturbations a backdoored
  model sends clean images to the target class far more often than a clean model does;
- ANP with the lab's defaults removes the Blend backdoor at a moderate clean cost, but on
  data as hard as real images (the synthetic generator since 2026-12-01) it does not
  separate BadNets from the clean task, as measured on real CIFAR-10 images in issue #14.

The models are trained once per session (about two minutes on two CPU cores).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab5_backdoor_anp.py"
#: The cells executed, in order: everything the attack table and ANP need, no figures.
CELLS = ("parameters", "setup", "triggers", "stamp", "poison_dataset", "attack_success",
         "clean_label", "train_attacks", "neuron_layers", "anp_perturb", "anp_mask",
         "anp_prune", "anp_choose")

pytestmark = pytest.mark.slow


def run_lab(**parameters) -> dict:
    """Execute the notebook's cells ``CELLS`` with ``parameters`` overriding the defaults."""
    import jupytext

    notebook = jupytext.read(NOTEBOOK)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells}
    namespace: dict = {}
    for grade_id in CELLS:
        exec(cells[grade_id], namespace)
        if grade_id == "parameters":
            namespace.update(parameters)
    return namespace


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict:
    """The lab at the cpu profile on the synthetic dataset: trained models and their numbers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        mp.setenv("LABSUPPORT_OUTPUT", str(tmp_path_factory.mktemp("lab5")))
        mp.delenv("NBGRADER_EXECUTION", raising=False)
        mp.setenv("LABSUPPORT_DEVICE", "cpu")
        return run_lab(profile="cpu", dataset="synthetic")


@pytest.mark.parametrize("attack", ["BadNets", "Blend"])
def test_dirty_label_attacks_succeed_at_no_cost(lab, attack):
    """The seeds' claim at the `cpu` budget: attack success >= 0.9 at a clean-accuracy cost
    of at most 3 points."""
    row = lab["ATTACKS"][attack]
    assert row["attack_success"] >= 0.90, f"{attack}: attack success {row['attack_success']:.3f}"
    loss = lab["CLEAN_ACCURACY"] - row["clean_accuracy"]
    assert loss <= 0.03, (f"{attack}: clean accuracy {row['clean_accuracy']:.3f} vs "
                          f"{lab['CLEAN_ACCURACY']:.3f} for the clean model")
    # The backdoor is the model's, not the trigger's: the clean model sends stamped images to
    # the target no more often than its errors would (about 6% at clean accuracy 0.73).
    assert row["clean_model_attack_success"] <= 0.10


def test_clean_label_attack_succeeds(lab):
    row = lab["ATTACKS"]["Clean-label"]
    assert row["attack_success"] >= 0.80, f"clean-label attack success {row['attack_success']:.3f}"
    assert row["clean_model_attack_success"] <= 0.10
    # Labels were kept: every poisoned sample is a target-class image with its own label.
    _, y_poisoned, indices = lab["POISONED"]["Clean-label"]
    assert bool((y_poisoned == lab["Y_TRAIN"]).all())
    assert bool((lab["Y_TRAIN"][indices] == lab["target"]).all())


def target_rate_under_perturbation(lab, model, eps: float, steps: int = 5) -> float:
    """Fraction of the clean split's non-target images that ``model`` classifies as the
    target under the lab's adversarial neuron perturbation (all masks 1, training-mode
    batch norm on a copy, as in the lab's mask learning)."""
    x, y, target = lab["X_CLEAN"], lab["Y_CLEAN"], lab["target"]
    net = copy.deepcopy(model).train()
    ones = {name: torch.ones(layer.num_features)
            for name, layer in lab["neuron_layers"](net).items()}
    noise = lab["anp_perturb"](net, x, y, ones, eps=eps, steps=steps,
                               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predictions = lab["anp_forward"](net, x, ones, noise).argmax(1)
    return (predictions[y != target] == target).float().mean().item()


def test_neuron_perturbation_reveals_the_backdoor(lab):
    backdoored = target_rate_under_perturbation(lab, lab["MODELS"]["BadNets"], lab["anp_eps"])
    clean = target_rate_under_perturbation(lab, lab["CLEAN_MODEL"], lab["anp_eps"])
    # Measured here: 0.47 for the BadNets model, 0.15 for the clean one.
    assert backdoored >= 0.25 and backdoored >= 2 * clean, (
        f"under neuron perturbations (eps {lab['anp_eps']}), {backdoored:.2f} of the clean "
        f"images go to the target for the BadNets model and {clean:.2f} for the clean model")


def pruning_curve(lab, attack: str) -> list[tuple[float, float, float]]:
    """``(threshold, clean test accuracy, attack success)`` after ANP with the lab's defaults
    (eps 0.4, alpha 0.2, 200 iterations at the cpu profile), at every threshold of the lab."""
    model = lab["MODELS"][attack]
    masks = lab["anp_mask"](model, lab["X_CLEAN"], lab["Y_CLEAN"], eps=lab["anp_eps"],
                            alpha=lab["anp_alpha"], iters=lab["SIZES"]["anp_iters"],
                            lr=lab["anp_lr"], batch_size=lab["SIZES"]["anp_batch"],
                            seed=lab["seed"])
    curve = []
    for threshold in lab["SIZES"]["anp_thresholds"]:
        pruned = lab["anp_prune"](model, masks, threshold)
        curve.append((threshold, lab["evaluate"](pruned, lab["X_TEST"], lab["Y_TEST"]),
                      lab["attack_success_rate"](pruned, lab["X_TEST"], lab["Y_TEST"],
                                                 lab["TRIGGERS"][attack], target=lab["target"])))
    print(attack, [(t, round(a, 3), round(s, 3)) for t, a, s in curve])
    return curve


def test_anp_removes_the_blend_backdoor(lab):
    """Measured 2026-12-01 (cpu profile, synthetic, CPU): pruning the 10 neurons whose masks
    fall below 0.1 takes Blend's attack success from 0.985 to 0.022 at a 7-point clean cost."""
    before = lab["ATTACKS"]["Blend"]["clean_accuracy"]
    curve = pruning_curve(lab, "Blend")
    assert any(success < 0.10 and accuracy >= before - 0.10 for _, accuracy, success in curve)


def test_anp_does_not_separate_badnets_on_data_as_hard_as_real_images(lab):
    """What issue #14 measured on real CIFAR-10 images (BadNets at 1.00 at every threshold)
    holds on the synthetic data too: wherever pruning costs at most 5 points of clean
    accuracy, BadNets' attack success stays >= 0.85 (measured 2026-12-01: 1.00 up to
    threshold 0.4, 0.90 at 0.5 for 9 points of accuracy, 0.25 at 0.7 for 20 points)."""
    before = lab["ATTACKS"]["BadNets"]["clean_accuracy"]
    curve = pruning_curve(lab, "BadNets")
    affordable = [success for _, accuracy, success in curve if accuracy >= before - 0.05]
    assert affordable and min(affordable) >= 0.85, curve
