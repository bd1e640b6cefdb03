"""Lab 6's attacks against the peer libraries (ART, torchattacks) on the same model and the
same inputs: the digits CNN of the lab (the ``cpu`` asset, trained on the offline digits
stand-in) and 32 test digits. Attack strength must be no worse than the peers':

- FGSM: the same images as ART's FastGradientMethod and torchattacks' FGSM;
- I-FGSM (same eps, step, iterations): success rate at least the peers' (ART's
  BasicIterativeMethod, torchattacks' BIM), with no larger L-inf perturbations;
- DeepFool (overshoot 0.02, 50 iterations, all classes): success rate at least the peers'
  (ART's DeepFool, torchattacks' DeepFool), median L2 no more than 10% above theirs.

Speed is measured in benchmarks/evasion.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evasion import lab_answers

from labsupport.assets import load_asset
from labsupport.digits import load_digits

pytestmark = pytest.mark.slow
N = 32


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        data = load_digits("digits")
        model = load_asset("lab6-digits-cnn", dataset=data, profile="cpu", device="cpu")
    x, y = data.x_test[:N], data.y_test[:N]
    return model, x, y, lab_answers()


def art_classifier(model):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                             input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0),
                             device_type="cpu")


def success(model, x_adv, y) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y).float().mean().item()


def test_fgsm_equals_art_and_torchattacks(setup):
    from art.attacks.evasion import FastGradientMethod

    model, x, y, lab = setup
    ours = lab["fgsm"](model, x, y, 0.1)
    art = FastGradientMethod(art_classifier(model), norm=np.inf, eps=0.1, batch_size=N)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    assert (ours - theirs).abs().max() < 1e-5
    torchattacks = pytest.importorskip("torchattacks")
    ta = torchattacks.FGSM(model, eps=0.1)(x, y)
    assert (ours - ta).abs().max() < 1e-5


def test_iterative_fgsm_is_no_weaker_than_the_peers(setup):
    from art.attacks.evasion import BasicIterativeMethod

    model, x, y, lab = setup
    eps, step, steps = 0.1, 0.01, 20
    ours, _ = lab["iterative_fgsm"](model, x, y, eps, step, steps)
    art = BasicIterativeMethod(art_classifier(model), eps=eps, eps_step=step, max_iter=steps,
                               batch_size=N, verbose=False)
    peers = {"ART": torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))}
    torchattacks = pytest.importorskip("torchattacks")
    peers["torchattacks"] = torchattacks.BIM(model, eps=eps, alpha=step, steps=steps)(x, y)
    mine = success(model, ours, y)
    assert (ours - x).abs().max() <= eps + 1e-6
    for name, theirs in peers.items():
        assert mine >= success(model, theirs, y), name
        assert (ours - x).abs().amax(dim=(1, 2, 3)).mean() <= (
            (theirs - x).abs().amax(dim=(1, 2, 3)).mean() + 1e-6), name


def test_deepfool_is_no_weaker_than_the_peers(setup):
    from art.attacks.evasion import DeepFool

    model, x, y, lab = setup
    ours, _ = lab["deepfool"](model, x, 10, overshoot=0.02, max_iter=50)
    art = DeepFool(art_classifier(model), max_iter=50, epsilon=0.02, nb_grads=10,
                   batch_size=N, verbose=False)
    peers = {"ART": torch.from_numpy(art.generate(x.numpy()))}
    torchattacks = pytest.importorskip("torchattacks")
    with torch.no_grad():
        predicted = model(x).argmax(1)  # DeepFool moves away from the predicted label
    peers["torchattacks"] = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(x, predicted)

    def fooled_and_l2(x_adv):
        with torch.no_grad():
            fooled = model(x_adv).argmax(1) != predicted
        return fooled, (x_adv - x).flatten(1).norm(dim=1)

    mine, my_l2 = fooled_and_l2(ours)
    assert mine.float().mean() >= 0.95
    for name, theirs in peers.items():
        fooled, l2 = fooled_and_l2(theirs)
        assert mine.float().mean() >= fooled.float().mean(), name
        both = mine & fooled  # the perturbations' sizes, on the images both attacks fooled
        assert my_l2[both].median() <= 1.1 * l2[both].median(), (
            name, my_l2[both].median(), l2[both].median())
