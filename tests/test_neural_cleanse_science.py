"""Science of Lab 3: over several course secrets, Neural Cleanse (the reference method, at a
small budget) flags the backdoored suspect with the right target, and not the clean one.

Offline digits (scikit-learn's, ten classes), DigitsCNN trained as the asset recipe does
(:func:`labsupport.neural_cleanse.train_suspect`), reverse engineering with the authors'
schedule on 128 clean test images in minibatches of 32, 40 epochs per class. Two secrets,
one backdooring each suspect.

Measured (2026-12-01, 2 shared cores): at 30 epochs of 2 minibatches the optimisation is far
from converged (norms 30 to 90 of 784 pixels) and the decision was wrong for one secret; at
40 epochs of 4 minibatches (an exploration run) the backdoored suspect's target had norm 6.4
against 23 to 37 (index 4.1) while the clean suspect's smallest norm reached index 2.9: the
MAD rule flags clean models too at small budgets (as the authors note for CIFAR), so the test
checks the decision between the two suspects and that the backdoored one stands out more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labsupport import backdoor as bd
from labsupport import neural_cleanse as nc
from labsupport.digits import load_digits
from labsupport.models import build_model
from labsupport.train import evaluate

#: Secrets whose plans backdoor A and B respectively (checked below).
SECRETS = ("science-0", "science-1")


def _suspects(secret, data):
    models = {}
    for name in nc.SUSPECTS:
        torch.manual_seed(0)
        model = build_model("DigitsCNN", num_classes=10)
        nc.train_suspect(model, data.x_train, data.y_train, suspect=name, secret=secret,
                         epochs=8, batch_size=64, seed=0)
        models[name] = model.eval()
    return models


@pytest.mark.slow
@pytest.mark.parametrize("secret", SECRETS)
def test_neural_cleanse_flags_the_backdoored_suspect(secret, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_PROGRESS", "0")
    torch.set_num_threads(1)
    data = load_digits("digits")
    plan = nc.plan(secret, num_classes=10, image_shape=(1, 28, 28))
    models = _suspects(secret, data)
    x_def, y_def = data.x_test[-128:], data.y_test[-128:]
    x_test, y_test = data.x_test[:-128], data.y_test[:-128]
    backdoored = models[plan.backdoored]
    assert evaluate(backdoored, x_test, y_test) > 0.9
    assert bd.attack_success_rate(backdoored, x_test, y_test, plan.trigger,
                                  target=plan.target) > 0.9
    norms, indices = {}, {}
    for name, model in models.items():
        norms[name] = [nc.reverse_engineer(model, k, x_def, y_def, epochs=40, batch_size=32)["norm"]
                       for k in range(10)]
        indices[name] = nc.anomaly_index(norms[name])
    assert nc.decide(norms, indices) == (plan.backdoored, plan.target), (norms, indices)
    assert indices[plan.backdoored][plan.target] > 2
    clean = plan.clean
    smallest = int(np.argmin(norms[clean]))
    assert indices[clean][smallest] < indices[plan.backdoored][plan.target], (norms, indices)


def test_science_secrets_cover_both_suspects():
    assert {nc.plan(s).backdoored for s in SECRETS} == {"A", "B"}
