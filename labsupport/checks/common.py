"""What every lab's test cells share: silence, tiny seeded models, instrumentation, comparisons.

Test cells must run in seconds, be deterministic and write nothing to stderr (nbgrader
scores a test cell that writes to stderr as 0). So:

- :func:`quiet` wraps a call to student code: warnings off, progress bars off, CPU threads
  pinned for reproducibility. :func:`silent` also keeps whatever the student's code writes
  to stderr (its own progress bar, a diagnostic print) out of the test cell's output.
- :func:`tiny_cnn` is a seeded few-hundred-parameter CNN for 8x8 images.
- :class:`Instrumented` wraps a model and records every forward pass (its input, the
  gradient that reached the input, the mode) and counts backward passes through it.
  :class:`CountingSGD` is an SGD that counts its steps and remembers, for each, the weights
  and gradients it saw. Together they let a test check *what a training loop did* (how many
  backward passes, which inputs, which gradients) instead of how its code looks.
- :func:`assert_close` compares tensors with a message that says what differed and by how much.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@contextmanager
def quiet(threads: int | None = 1) -> Iterator[None]:
    """Run a block silently and reproducibly: no warnings, no progress bars, fixed threads."""
    previous_progress = os.environ.get("LABSUPPORT_PROGRESS")
    previous_threads = torch.get_num_threads()
    os.environ["LABSUPPORT_PROGRESS"] = "0"
    if threads:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if previous_progress is None:
            os.environ.pop("LABSUPPORT_PROGRESS", None)
        else:
            os.environ["LABSUPPORT_PROGRESS"] = previous_progress
        torch.set_num_threads(previous_threads)


@contextmanager
def silent(threads: int | None = 1) -> Iterator[io.StringIO]:
    """:func:`quiet`, and everything the block writes to ``sys.stderr`` goes to the buffer it
    yields instead of the cell's output.

    nbgrader scores a test cell that writes to stderr as 0; a correct answer that draws its
    own tqdm bar or prints a diagnostic to stderr must not lose its points for that.
    """
    buffer = io.StringIO()
    with quiet(threads), contextlib.redirect_stderr(buffer):
        yield buffer


def tiny_cnn(num_classes: int = 2, *, seed: int = 0, width: int = 8,
             image_size: int = 8) -> nn.Module:
    """A seeded tiny CNN for (N, 3, ``image_size``, ``image_size``) images in [0, 1]."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential(
            nn.Conv2d(3, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(width * (image_size // 2) ** 2, num_classes),
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def assert_close(actual: Any, expected: Any, *, what: str, rtol: float = 1e-5,
                 atol: float = 1e-6) -> None:
    """Assert two tensors (or numbers) agree; the message names ``what`` and the worst gap."""
    actual_t = torch.as_tensor(actual, dtype=torch.float64)
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    if actual_t.shape != expected_t.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected_t.shape)}, "
                             f"got {tuple(actual_t.shape)}.")
    gap = (actual_t - expected_t).abs()
    allowed = atol + rtol * expected_t.abs()
    if bool((gap > allowed).any()):
        worst = int(torch.argmax(gap - allowed))
        raise AssertionError(
            f"{what}: {int((gap > allowed).sum())} of {gap.numel()} values differ; worst at "
            f"flat index {worst}: got {actual_t.flatten()[worst].item():.6g}, expected "
            f"{expected_t.flatten()[worst].item():.6g}."
        )


@dataclass
class ForwardRecord:
    """One forward pass through an :class:`Instrumented` model."""

    input: torch.Tensor
    training: bool
    grad_enabled: bool
    input_grad: torch.Tensor | None = None
    backward_passes: int = 0


class Instrumented(nn.Module):
    """Wraps ``model``; records every forward pass and counts backward passes through it.

    ``records[i].input`` is a copy of the i-th input; ``records[i].input_grad`` the gradient
    that reached that input in a backward pass (only when the input required a gradient);
    ``records[i].backward_passes`` how many backward passes went through that forward's
    output. Attribute access falls through to the wrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.records: list[ForwardRecord] = []

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        record = ForwardRecord(x.detach().clone(), self.training, torch.is_grad_enabled())
        self.records.append(record)
        if record.grad_enabled and x.requires_grad:
            def save_input_grad(grad: torch.Tensor) -> None:
                record.input_grad = grad.detach().clone()
            x.register_hook(save_input_grad)
        out = self.inner(x)
        if out.requires_grad:
            def count_backward(grad: torch.Tensor) -> None:
                record.backward_passes += 1
            out.register_hook(count_backward)
        return out

    @property
    def training_forwards(self) -> list[ForwardRecord]:
        """The forward passes made with gradients enabled (training, not evaluation)."""
        return [r for r in self.records if r.grad_enabled]

    @property
    def backward_passes(self) -> int:
        """Backward passes through the model, over all forwards."""
        return sum(r.backward_passes for r in self.records)


@dataclass
class StepRecord:
    """One optimizer step: how many forwards had run, the weights before it, their gradients."""

    forwards_before: int
    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor | None] = field(default_factory=list)


class CountingSGD(torch.optim.SGD):
    """SGD that records each step (see :class:`StepRecord`); pass the :class:`Instrumented`
    model as ``model`` so a step knows which forward passes preceded it."""

    def __init__(self, model: nn.Module, lr: float = 0.1, **kwargs: Any) -> None:
        super().__init__(model.parameters(), lr=lr, **kwargs)
        self.model = model
        self.steps: list[StepRecord] = []

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 (same as SGD.step)
        records = getattr(self.model, "records", [])
        params = [p for group in self.param_groups for p in group["params"]]
        self.steps.append(StepRecord(
            len(records),
            [p.detach().clone() for p in params],
            [None if p.grad is None else p.grad.detach().clone() for p in params],
        ))
        return super().step(closure)
