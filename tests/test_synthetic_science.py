"""The synthetic dataset is about as hard as real images in the ways the labs depend on
(slow: trains models).

On SimpleCNN at the `cpu` profile's sizes (4,000 training images; sizes in ``conftest.py``
and below), measured on real CIFAR-10 images of the four course classes the course models
reach clean accuracy 0.6-0.8, adversarial training costs clean accuracy, larger smoothing
noise costs accuracy, and backdoors need a real training budget. The generator must show
the same, so the labs' lessons are visible offline:

- clean test accuracy of a standard model in [0.70, 0.90] (the previous generator gave
  1.00: the lessons' costs were invisible);
- PGD (L-inf, eps 8/255) drives a standardly trained model below 20% accuracy;
- adversarial training (free AT, Shafahi et al. 2019, as in Lab 1's `cpu` profile:
  eps 8/255, m = 4, 2 epochs on 4,000 images) raises PGD accuracy by >= 15 points and costs
  >= 5 points of clean accuracy;
- Gaussian-noise training at sigma = 0.20 (Lab 2's asset) has a lower accuracy under its
  noise than sigma = 0.05, beyond both 95% confidence intervals;
- a 3x3 bottom-right trigger at a 5% poison rate is *not* learned at a tiny budget
  (1,000 images, one epoch: attack success < 0.7), and is learned at the `cpu` budget
  (attack success >= 0.9 on test images whose class is not the target) while costing
  <= 3 points of clean accuracy.

The models are trained once per session (fixtures) and shared between the tests; the
standard model is also the one the attack-strength test in ``test_attacks.py`` uses.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import SCIENCE_EPOCHS, SCIENCE_TEST, SCIENCE_TRAIN
from statsmodels.stats.proportion import proportion_confint

from labsupport.assets import load_asset
from labsupport.attacks import pgd
from labsupport.models import SimpleCNN
from labsupport.runtime import seed_everything
from labsupport.train import evaluate, fit, make_loader, predict, train_standard

pytestmark = pytest.mark.slow

EPS = 8 / 255
#: Free adversarial training as Lab 1's `cpu` profile runs it: 8 epochs of standard training
#: divided by m = 4 replays, on 4,000 images.
REPLAYS = 4
AT_EPOCHS = 2
AT_TRAIN = 4000
#: The tiny budget at which a backdoor must not yet be learned: images and epochs.
TINY_BUDGET = (1000, 1)
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
        epochs=AT_EPOCHS, replays=REPLAYS, eps=EPS)


def train_backdoored(synthetic, n_train: int, epochs: int) -> tuple[torch.nn.Module, int]:
    """Standard training (the standard model's recipe and seed) on a poisoned training set:
    5% of the images, drawn from the non-target classes, stamped and relabelled."""
    x, y = synthetic.x_train[:n_train].clone(), synthetic.y_train[:n_train].clone()
    candidates = (y != TARGET).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(0)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)]
    chosen = chosen[: round(POISON_RATE * len(x))]
    x[chosen], y[chosen] = stamp(x[chosen]), TARGET
    seed_everything(0)
    model = SimpleCNN(num_classes=synthetic.num_classes)
    train_standard(model, x, y, epochs=epochs, seed=0, desc="backdoor")
    return model.eval(), len(chosen)


def attack_success(model: torch.nn.Module, synthetic) -> float:
    others = synthetic.y_test != TARGET
    return (predict(model, stamp(synthetic.x_test[others])) == TARGET).float().mean().item()


@pytest.fixture(scope="module")
def backdoored(synthetic, quiet_session):
    return train_backdoored(synthetic, SCIENCE_TRAIN, SCIENCE_EPOCHS)


@pytest.fixture(scope="module")
def quiet_session():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        yield


def test_clean_accuracy_is_that_of_real_images_not_perfect(standard_accuracy):
    print(f"standard model ({SCIENCE_TRAIN} images x {SCIENCE_EPOCHS} epochs): clean test "
          f"accuracy {standard_accuracy:.3f}")
    assert 0.70 <= standard_accuracy <= 0.90


def test_pgd_breaks_a_standard_model(standard_pgd, standard_accuracy):
    print(f"standard model: PGD-10 accuracy {standard_pgd:.3f} (clean {standard_accuracy:.3f})")
    assert standard_pgd < 0.20


def test_adversarial_training_buys_robustness(free_at_model, standard_pgd, pgd_test):
    robust = pgd_accuracy(free_at_model, *pgd_test)
    clean = evaluate(free_at_model, *pgd_test)
    print(f"free AT (m={REPLAYS}, {AT_EPOCHS} epochs, {AT_TRAIN} images): clean {clean:.3f}, "
          f"PGD-10 {robust:.3f}; standard PGD-10 {standard_pgd:.3f}")
    assert robust >= standard_pgd + 0.15


def test_adversarial_training_costs_clean_accuracy(free_at_model, standard_accuracy, synthetic):
    clean = evaluate(free_at_model, synthetic.x_test, synthetic.y_test)
    print(f"clean accuracy: free AT {clean:.3f}, standard {standard_accuracy:.3f}")
    assert clean <= standard_accuracy - 0.05


def test_larger_smoothing_noise_costs_accuracy(synthetic, quiet_session):
    """Lab 2's noise-trained assets (the `cpu` profile), each under its own noise."""
    x, y = synthetic.x_test[:SCIENCE_TEST], synthetic.y_test[:SCIENCE_TEST]
    accuracy, interval = {}, {}
    for sigma in (0.05, 0.20):
        model = load_asset(f"lab2-noise-{sigma:.2f}", dataset=synthetic, profile="cpu",
                           device="cpu")
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        correct = int((predict(model, x + sigma * noise) == y).sum())
        accuracy[sigma] = correct / len(y)
        interval[sigma] = proportion_confint(correct, len(y), alpha=0.05, method="wilson")
    print(f"accuracy under its own noise: {accuracy}; 95% intervals {interval}")
    assert interval[0.20][1] < interval[0.05][0]


def test_a_backdoor_is_learned_at_the_cpu_budget(backdoored, standard_accuracy, synthetic):
    model, n_poisoned = backdoored
    clean = evaluate(model, synthetic.x_test, synthetic.y_test)
    success = attack_success(model, synthetic)
    print(f"backdoor ({n_poisoned} poisoned of {SCIENCE_TRAIN}, {SCIENCE_EPOCHS} epochs): "
          f"attack success {success:.3f}, clean {clean:.3f} vs {standard_accuracy:.3f} "
          "without poison")
    assert success >= 0.90
    assert clean >= standard_accuracy - 0.03


def test_a_backdoor_needs_a_real_training_budget(synthetic, quiet_session):
    model, n_poisoned = train_backdoored(synthetic, *TINY_BUDGET)
    success = attack_success(model, synthetic)
    print(f"backdoor at a tiny budget ({n_poisoned} poisoned of {TINY_BUDGET[0]}, "
          f"{TINY_BUDGET[1]} epoch): attack success {success:.3f}")
    assert success < 0.70
