"""A generic training loop around a step function, and batched, device-aware evaluation."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .runtime import Timer, eval_mode, model_device, under_autograder

T = TypeVar("T")

#: A training step: takes the model, a batch of images and labels (already on the
#: model's device) and returns the batch loss (a float) after updating the model.
StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
             leave: bool = False) -> Iterator[T]:
    """A ``tqdm.auto`` progress bar, silent under the autograder or ``LABSUPPORT_PROGRESS=0``."""
    from tqdm.auto import tqdm

    disable = under_autograder() or os.environ.get("LABSUPPORT_PROGRESS", "1") == "0"
    return iter(tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable))


def make_loader(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 128,
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader over in-memory tensors whose shuffling is seeded (reproducible)."""
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} images, {len(y)} labels.")
    if len(x) == 0:
        raise ValueError("Cannot make a loader over no images: is the training set empty?")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator
    )


@dataclass
class History:
    """What a training run measured, one entry per epoch."""

    loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total training time (evaluation excluded)."""
        return float(sum(self.epoch_seconds))


def fit(
    model: nn.Module,
    loader: DataLoader,
    step: StepFn,
    *,
    epochs: int,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    desc: str = "train",
    on_epoch_end: Callable[[int, History], Any] | None = None,
) -> History:
    """Run ``step`` over every batch of ``loader`` for ``epochs`` epochs.

    The model is put in train mode; batches are moved to the model's device. After each
    epoch the model is evaluated on ``eval_data`` (if given) and ``on_epoch_end(epoch,
    history)`` is called. The model is left in eval mode. Returns a :class:`History`.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be non-negative; got {epochs}.")
    if len(loader) == 0:
        raise ValueError("The loader yields no batches: is the training set empty?")
    device = model_device(model)
    history = History()
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        bar = progress(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", total=len(loader))
        with Timer(device) as timer:
            for x, y in bar:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = step(model, x, y)
                total += float(loss) * len(x)
                count += len(x)
        history.epoch_seconds.append(timer.seconds)
        history.loss.append(total / max(count, 1))
        if eval_data is not None:
            history.eval_accuracy.append(evaluate(model, *eval_data))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels for ``x`` (computed in batches on the model's device, returned on CPU).

    The model is evaluated in eval mode; its previous mode is restored."""
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(device, non_blocking=True)
            out.append(model(batch).argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Accuracy of ``model`` on ``(x, y)``, in [0, 1]; leaves the model's mode unchanged."""
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} images, {len(y)} labels.")
    if len(x) == 0:
        raise ValueError("Cannot evaluate on an empty set.")
    return (predict(model, x, batch_size=batch_size) == y.cpu()).float().mean().item()


def train_standard(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    desc: str = "train",
) -> History:
    """Plain SGD training with a one-cycle learning-rate schedule (what the assets use).

    ``augment`` transforms each batch (on the device) before the forward pass, e.g.
    Gaussian-noise augmentation. Not a lab solution (it makes its own optimizer and
    schedule): Lab 1, where the training step *is* the lesson, has students write it, so the
    package exports no training step.
    """
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
        nesterov=momentum > 0,
    )
    total_steps = epochs * len(loader)
    scheduler = None
    if total_steps >= 2:  # one-cycle needs a warm-up step and a decay step
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps,
            pct_start=max(0.25, 1.5 / total_steps),
        )

    def step(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(augment(xb) if augment else xb), yb)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss.item()

    return fit(model, loader, step, epochs=epochs, eval_data=eval_data, desc=desc)
