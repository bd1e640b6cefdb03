"""The synthetic dataset shows every phenomenon the course teaches (slow: trains models).

On SimpleCNN at a small, `cpu`-sized budget (sizes in ``conftest.py`` and below, the
smallest that pass with margin on this 2-core machine):

- clean test accuracy >= 85%;
- PGD (L-inf, eps 8/255) drives a standardly trained model below 20% accuracy;
- adversarial training (free AT, Shafahi et al. 2019, as in Lab 1: eps 8/255, m = 4, one
  epoch on 4,000 images) raises PGD accuracy by >= 15 points over standard training;
- a 3x3 bottom-right trigger at a 5% poison rate reaches >= 90% attack success (test images
  whose class is not the target) while costing <= 2 points of clean accuracy.

The models are trained once per session (fixtures) and shared between the tests; the
standard model is also the one the attack-strength test in ``test_attacks.py`` uses.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import SCIENCE_EPOCHS, SCIENCE_TEST, SCIENCE_TRAIN

from labsupport.attacks import pgd
from labsupport.models import SimpleCNN
from labsupport.runtime import seed_everything
from labsupport.train import evaluate, fit, make_loader, predict, train_standard

pytestmark = pytest.mark.slow

EPS = 8 / 255
#: Free adversarial training: minibatch replays, and training images; one epoch, so its cost
#: is that of 4 epochs of standard training on the same images.
REPLAYS = 4
AT_TRAIN = 4000
POISON_RATE = 0.05
TARGET = 0


def pgd_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy under PGD-10 (L-inf, eps 8/255, step 2/255, random start)."""
    return evaluate(model, pgd(model, x, y, eps=EPS, alpha=2 / 255, steps=10, seed=0), y)


def free_adversarial_training(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                              epochs: int, replays: int, eps: float, lr: float = 0.05,
                              seed: int = 0) -> torch.nn.Module:
    """Free AT: replay each minibatch ``replays`` times; one backward pass per replay gives
    the weights' gradient (an SGD step) and the perturbation's (an FGSM step of size eps,
    clipped to the eps ball), and the perturbation carries over to the next replay and the
    next minibatch."""
    loader = make_loader(x, y, batch_size=128, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4,
                                nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(loader) * replays, pct_start=0.25)
    delta = torch.zeros(128, *x.shape[1:])

    def step(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> float:
        nonlocal delta
        for _ in range(replays):
            d = delta[: len(xb)].clone().requires_grad_(True)
            loss = F.cross_entropy(model((xb + d).clamp(0, 1)), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            delta[: len(xb)] = (d.detach() + eps * d.grad.sign()).clamp(-eps, eps)
        return loss.item()

    fit(model, loader, step, epochs=epochs, desc="free AT")
    return model


def stamp(x: torch.Tensor) -> torch.Tensor:
    """Paste a 3x3 checkerboard (1 in its top-left corner) in the bottom-right corner."""
    board = (torch.arange(3)[:, None] + torch.arange(3)[None, :]) % 2 == 0
    out = x.clone()
    out[:, :, -3:, -3:] = board.float()
    return out


@pytest.fixture(scope="module")
def pgd_test(synthetic):
    return synthetic.x_test[:SCIENCE_TEST], synthetic.y_test[:SCIENCE_TEST]


@pytest.fixture(scope="module")
def standard_pgd(standard_model, pgd_test) -> float:
    return pgd_accuracy(standard_model, *pgd_test)


@pytest.fixture(scope="module")
def free_at_model(synthetic, quiet_session):
    seed_everything(0)
    model = SimpleCNN(num_classes=synthetic.num_classes)
    return free_adversarial_training(
        model, synthetic.x_train[:AT_TRAIN], synthetic.y_train[:AT_TRAIN],
        epochs=1, replays=REPLAYS, eps=EPS)


@pytest.fixture(scope="module")
def backdoored(synthetic, quiet_session):
    """Standard training (the standard model's recipe and seed) on a poisoned training set:
    5% of the images, drawn from the non-target classes, stamped and relabelled."""
    x, y = synthetic.x_train[:SCIENCE_TRAIN].clone(), synthetic.y_train[:SCIENCE_TRAIN].clone()
    candidates = (y != TARGET).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(0)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)]
    chosen = chosen[: round(POISON_RATE * len(x))]
    x[chosen], y[chosen] = stamp(x[chosen]), TARGET
    seed_everything(0)
    model = SimpleCNN(num_classes=synthetic.num_classes)
    train_standard(model, x, y, epochs=SCIENCE_EPOCHS, seed=0, desc="backdoor")
    return model.eval(), len(chosen)


@pytest.fixture(scope="module")
def quiet_session():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        yield


def test_clean_accuracy(standard_accuracy):
    print(f"standard model ({SCIENCE_TRAIN} images x {SCIENCE_EPOCHS} epochs): clean test "
          f"accuracy {standard_accuracy:.3f}")
    assert standard_accuracy >= 0.85


def test_pgd_breaks_a_standard_model(standard_pgd, standard_accuracy):
    print(f"standard model: PGD-10 accuracy {standard_pgd:.3f} (clean {standard_accuracy:.3f})")
    assert standard_pgd < 0.20


def test_adversarial_training_buys_robustness(free_at_model, standard_pgd, pgd_test):
    robust = pgd_accuracy(free_at_model, *pgd_test)
    clean = evaluate(free_at_model, *pgd_test)
    print(f"free AT (m={REPLAYS}, {AT_TRAIN} images): clean {clean:.3f}, PGD-10 {robust:.3f}; "
          f"standard PGD-10 {standard_pgd:.3f}")
    assert robust >= standard_pgd + 0.15


def test_backdoor_is_learned_cheaply(backdoored, standard_accuracy, synthetic):
    model, n_poisoned = backdoored
    clean = evaluate(model, synthetic.x_test, synthetic.y_test)
    others = synthetic.y_test != TARGET
    success = (predict(model, stamp(synthetic.x_test[others])) == TARGET).float().mean().item()
    print(f"backdoor ({n_poisoned} poisoned of {SCIENCE_TRAIN}): attack success {success:.3f}, "
          f"clean {clean:.3f} vs {standard_accuracy:.3f} without poison")
    assert success >= 0.90
    assert clean >= standard_accuracy - 0.02
