"""Fixtures for Lab 1's test cells (free adversarial training, Shafahi et al. 2019).

- :func:`trace_training` runs a student's training function on a tiny fixture (a few
  batches of 8x8 images, a tiny CNN) with an :class:`~labsupport.checks.common.Instrumented`
  model and a :class:`~labsupport.checks.common.CountingSGD`, and returns a :class:`Trace`:
  every forward pass (which minibatch it was, the perturbation on it, the gradient that
  reached the input), every backward pass and every optimizer step.
  :func:`check_standard_train` and :func:`check_free_adv_train` state each task's
  requirements (the paper's algorithm) as assertions over that trace, with messages that say
  which requirement failed.
- :func:`robustness_data` is a two-class dataset with a *robust* feature (a large, noisy
  brightness pattern) and a *non-robust* one (a faint checkerboard, perfectly predictive but
  flipped by an eps-sized perturbation): standard training leans on the checkerboard and
  PGD breaks it; adversarial training learns the robust pattern.

The references that are answers to a task (:func:`expected_next_perturbation`,
:func:`train_standard_reference`) are :func:`~labsupport.answers.withheld`: they work in the
test cells and refuse to run inside a student's function.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..answers import withheld
from ..train import History, make_loader
from .common import (  # noqa: F401  (quiet, silent: for the test cells)
    CountingSGD,
    ForwardRecord,
    Instrumented,
    assert_close,
    quiet,
    silent,
    tiny_cnn,
)

#: The perturbation budget used by the fixtures (L-inf), on [0, 1] images.
EPS = 0.06
IMAGE_SHAPE = (3, 8, 8)


def replay_data(n: int = 24, *, seed: int = 0, low: float = 0.25,
                high: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random two-class 8x8 images with pixels in [low, high] and their labels.

    Pixels stay ``EPS`` away from 0 and 1 (by default), so clipping the image to [0, 1]
    never changes a perturbation of size ``EPS``: the input a model sees minus the clean
    image *is* the perturbation. Pass ``low=0, high=1`` for pixels on the boundary.
    """
    generator = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand((n, *IMAGE_SHAPE), generator=generator)
    if low == 0 and high == 1:
        x = x.round()  # every pixel exactly 0 or 1: clipping the image always matters
    y = torch.randint(0, 2, (n,), generator=generator)
    return x, y


@dataclass
class Trace:
    """What a training function did on a fixture (see the module docstring)."""

    model: Instrumented
    optimizer: CountingSGD
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    returned: Any

    @property
    def forwards(self) -> list[ForwardRecord]:
        """Forward passes made with gradients enabled (evaluation passes left out)."""
        return self.model.training_forwards

    @property
    def backward_passes(self) -> int:
        """Backward passes through the model."""
        return self.model.backward_passes

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken."""
        return len(self.optimizer.steps)

    def batch_of(self, record: ForwardRecord) -> int:
        """Index of the minibatch a forward pass was made on (the nearest one)."""
        gaps = [float((record.input - xb).abs().amax()) if xb.shape == record.input.shape
                else math.inf for xb, _ in self.batches]
        return min(range(len(gaps)), key=gaps.__getitem__)

    @property
    def batch_sequence(self) -> list[int]:
        """The minibatch index of every training forward pass, in order."""
        return [self.batch_of(record) for record in self.forwards]

    def perturbation(self, k: int) -> torch.Tensor:
        """The perturbation on the k-th training forward: its input minus the clean batch."""
        record = self.forwards[k]
        return record.input - self.batches[self.batch_of(record)][0]

    def weight_gradient_error(self, step: int) -> float:
        """Largest relative gap between the gradient the optimizer saw at ``step`` and the
        mean cross-entropy gradient of the forward just before it (recomputed)."""
        record = self.optimizer.steps[step]
        before = self.model.records[: record.forwards_before]
        training = [r for r in before if r.grad_enabled]
        if not training:
            return math.inf
        forward = training[-1]  # the last forward with gradients before this step
        labels = self.batches[self.batch_of(forward)][1]
        clone = copy.deepcopy(self.model.inner)
        with torch.no_grad():
            for p, value in zip(clone.parameters(), record.params, strict=True):
                p.copy_(value)
        clone.train(forward.training)
        loss = F.cross_entropy(clone(forward.input), labels)
        expected = torch.autograd.grad(loss, list(clone.parameters()))
        worst = 0.0
        for got, want in zip(record.grads, expected, strict=True):
            if got is None:
                return math.inf
            worst = max(worst, float((got - want).abs().max() / (want.abs().max() + 1e-8)))
        return worst


def trace_training(train_fn: Callable[..., Any], *, n: int = 24, batch_size: int = 8,
                   seed: int = 0, lr: float = 0.05, low: float = 0.25, high: float = 0.75,
                   **kwargs: Any) -> Trace:
    """Call ``train_fn(model, loader, optimizer, **kwargs)`` on the replay fixture.

    The loader is not shuffled (so the minibatch order is known) and every batch holds
    ``batch_size`` images. Returns the :class:`Trace`.
    """
    x, y = replay_data(n, seed=seed, low=low, high=high)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=False)
    model = Instrumented(tiny_cnn(seed=0))
    optimizer = CountingSGD(model, lr=lr, momentum=0.9)
    with silent():  # a student's own progress bar or prints stay out of the test cell
        returned = train_fn(model, loader, optimizer, **kwargs)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]
    return Trace(model, optimizer, batches, returned)


@withheld("Lab 1, task free_adv_train")
def expected_next_perturbation(delta: torch.Tensor, grad: torch.Tensor,
                               eps: float) -> torch.Tensor:
    """Free AT's perturbation update: an FGSM ascent step of size eps, clipped to the ball."""
    return (delta + eps * grad.sign()).clamp(-eps, eps)


def _fail(what: str, detail: str) -> None:
    raise AssertionError(f"{what}: {detail}")


def check_history(trace: Trace, epochs: int) -> None:
    """The training function returned fit's :class:`History`, one entry per epoch run."""
    returned = trace.returned
    if not isinstance(returned, History):
        _fail("the return value", f"return the History that fit returns; got {returned!r}")
    if len(returned.loss) != epochs:
        _fail("the returned History", f"expected {epochs} epoch(s) in it, got "
              f"{len(returned.loss)}")


def check_weight_gradients(trace: Trace) -> None:
    """Every optimizer step used the mean cross-entropy gradient of the forward pass just
    before it, and nothing else (old gradients cleared)."""
    for k in range(trace.optimizer_steps):
        error = trace.weight_gradient_error(k)
        if not error < 1e-4:
            _fail(f"optimizer step {k}", (
                f"the gradient the optimizer used is not the gradient of the mean "
                f"cross-entropy (F.cross_entropy of the logits) on the minibatch of the "
                f"forward pass just before it (relative error {error:.2g}): clear the old "
                f"gradients before each backward pass, back-propagate the mean "
                f"cross-entropy of the logits, and step after the backward pass"))


def check_standard_train(trace: Trace, *, epochs: int) -> None:
    """Assert that ``trace`` is standard training for ``epochs`` epochs: each minibatch once
    an epoch in the loader's order, on the clean images, one forward, backward and optimizer
    step each, on the fresh mean cross-entropy gradient; returns fit's History."""
    batches = len(trace.batches)
    expected = list(range(batches)) * epochs
    if trace.batch_sequence != expected:
        _fail("the minibatches trained on", (
            f"expected every minibatch once per epoch, in the loader's order, for {epochs} "
            f"epoch(s): {expected}; got {trace.batch_sequence}"))
    for k, record in enumerate(trace.forwards):
        clean = trace.batches[trace.batch_of(record)][0]
        if not torch.equal(record.input, clean):
            _fail(f"forward pass {k}", "standard training must see the clean images")
    if trace.optimizer_steps != len(expected):
        _fail("the optimizer steps", (
            f"expected one optimizer step per minibatch per epoch ({len(expected)}), got "
            f"{trace.optimizer_steps}"))
    if trace.backward_passes != len(expected) or any(
            r.backward_passes != 1 for r in trace.forwards):
        _fail("the backward passes", (
            f"expected one backward pass per minibatch ({len(expected)}), got "
            f"{trace.backward_passes}"))
    check_weight_gradients(trace)
    check_history(trace, epochs)


def check_free_adv_train(trace: Trace, *, epochs: int, eps: float, m: int,
                         exact: bool = True) -> None:
    """Assert that ``trace`` is free adversarial training (Shafahi et al., Algorithm 1).

    Each minibatch replayed ``m`` times in a row for ``ceil(epochs / m)`` epochs; one
    forward, one backward and one optimizer step per replay, on the fresh mean cross-entropy
    gradient of the perturbed minibatch; every input in [0, 1] and within ``eps`` of the
    clean image; fit's History returned. With ``exact`` (pixels at least ``eps`` away from
    0 and 1, so the input minus the clean image *is* the perturbation): the perturbation
    starts at zero and after each replay becomes ``clip(delta + eps * sign(g_adv), -eps,
    eps)``, carried over to the next replay and minibatch; a shorter minibatch uses (and
    updates) the first rows of it.
    """
    runs = math.ceil(epochs / m)
    batches = len(trace.batches)
    expected = [b for b in range(batches) for _ in range(m)] * runs
    if trace.batch_sequence != expected:
        _fail("the minibatches trained on", (
            f"expected each minibatch replayed m = {m} times in a row, for ceil({epochs} / "
            f"{m}) = {runs} epoch(s): {expected}; got {trace.batch_sequence}"))
    if trace.optimizer_steps != len(expected):
        _fail("the optimizer steps", (
            f"expected one optimizer step per replay ({len(expected)}), got "
            f"{trace.optimizer_steps}"))
    if trace.backward_passes != len(expected) or any(
            r.backward_passes != 1 for r in trace.forwards):
        _fail("the backward passes", (
            f"expected exactly one forward and one backward pass per replay "
            f"({len(expected)}); got {len(trace.forwards)} forward and "
            f"{trace.backward_passes} backward passes: the one backward pass must give "
            f"both the weight gradient and the gradient for delta"))
    for k, record in enumerate(trace.forwards):
        x = record.input
        if float(x.min()) < 0 or float(x.max()) > 1:
            _fail(f"replay {k}", (
                f"the model got pixels in [{float(x.min()):.3f}, {float(x.max()):.3f}]: "
                f"clip x + delta to the image range [0, 1]"))
        gap = float(trace.perturbation(k).abs().max())
        if gap > eps + 1e-6:
            _fail(f"replay {k}", (
                f"the input is {gap:.4f} away from the clean image (L-inf), more than eps "
                f"= {eps}: clip delta to [-eps, eps]"))
    check_weight_gradients(trace)
    if exact:
        rows = max(len(xb) for xb, _ in trace.batches)
        state = torch.zeros((rows, *trace.batches[0][0].shape[1:]))
        for k, record in enumerate(trace.forwards):
            n = len(record.input)
            where = f"the perturbation on replay {k} (minibatch {trace.batch_sequence[k]})"
            if k == 0:
                where += ": delta must start at zero"
            else:
                where += (": expected delta after the previous replay, clip(delta + eps * "
                          "sign(g_adv), -eps, eps), carried over to this replay and "
                          "minibatch (a shorter minibatch uses the first rows of delta)")
            assert_close(trace.perturbation(k), state[:n], what=where, rtol=1e-4, atol=1e-5)
            if record.input_grad is None:
                _fail(f"replay {k}", ("no gradient reached the input: the backward pass must "
                                      "also give the gradient for delta"))
            state[:n] = expected_next_perturbation(state[:n], record.input_grad, eps)
    check_history(trace, runs)


# --------------------------------------------------------------------------------------
# Robustness


def robustness_data(n: int = 512, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class 8x8 images with a robust and a non-robust feature (module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=generator)
    sign = (2 * y - 1).float().view(-1, 1, 1, 1)
    robust = torch.ones(IMAGE_SHAPE)
    robust[:, :, IMAGE_SHAPE[2] // 2 :] = -1  # left half brighter than right half (or not)
    rows = torch.arange(IMAGE_SHAPE[1]).view(-1, 1)
    cols = torch.arange(IMAGE_SHAPE[2]).view(1, -1)
    checker = (((rows + cols) % 2) * 2 - 1).float().expand(IMAGE_SHAPE)
    strength = 0.10 + 0.10 * torch.randn((n, 1, 1, 1), generator=generator)
    noise = 0.06 * torch.randn((n, *IMAGE_SHAPE), generator=generator)
    x = 0.5 + sign * strength * robust + sign * 0.04 * checker + noise
    return x.clamp(0, 1), y


def robustness_setup(seed: int = 0) -> tuple[nn.Module, Any, torch.optim.Optimizer]:
    """A fresh tiny model, a shuffled loader over :func:`robustness_data` and its optimizer."""
    x, y = robustness_data(seed=seed)
    model = tiny_cnn(seed=seed)
    loader = make_loader(x, y, batch_size=32, shuffle=True, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, loader, optimizer


def pgd_success(model: nn.Module, *, eps: float = EPS, seed: int = 1) -> tuple[float, float]:
    """(benign accuracy, PGD success rate) of ``model`` on fresh robustness test data."""
    from ..attacks import pgd, success_rate
    from ..train import evaluate

    x, y = robustness_data(512, seed=seed + 1000)
    with quiet():
        accuracy = evaluate(model, x, y)
        x_adv = pgd(model, x, y, eps=eps, steps=10, seed=seed)
        return accuracy, success_rate(model, x_adv, y)


@withheld("Lab 1, task standard_train")
def train_standard_reference(model: nn.Module, loader: Any, optimizer: torch.optim.Optimizer,
                             *, epochs: int) -> Any:
    """The baseline the robustness check compares against: plain SGD steps on the mean
    cross-entropy, independent of the student's ``standard_train``."""
    from ..train import fit

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return fit(model, loader, step, epochs=epochs, desc="reference")
