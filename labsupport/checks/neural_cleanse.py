"""Fixtures for Lab 3's test cells (Neural Cleanse).

Everything is tiny (3x8x8 images, a few dozen samples, hand-built models), seeded and
silent, so a test cell runs in about a second. The truth about every fixture model is built
here, by the test, never read from the lab's suspects:

- :class:`TinyBackdoorNet`: a small differentiable classifier whose clean decision uses the
  whole image (a linear read-out through batch norm), with, optionally, a planted backdoor:
  a ``size`` x ``size`` patch of a known pattern at a known place sends any image to
  ``target``. Reverse-engineering finds a small mask for its target and large ones for the
  other classes.
- :func:`backdoor_fixture`: such a model, images it classifies cleanly, their labels and the
  planted trigger.
- :func:`replay_schedule`: the authors' cost schedule replayed from a run's logged attack
  successes and norms (what costs it must have used, when it must have stopped, which epoch
  is the best), so a test can check a student's log whatever their code looks like.
- :class:`LabelSpy`, :func:`training_inputs`, :func:`match_images`, :func:`sgd_reference`:
  what a fine-tuning loop fed the model (the images, and the labels, read back from the
  cross-entropy's gradient), which of them carried a trigger, and plain SGD replayed on
  exactly those batches.
- :func:`silent`, :func:`assert_close` (from :mod:`.common`) and :class:`Instrumented`.

:func:`replay_schedule` answers part of a Lab 3 task, so it is
:func:`labsupport.answers.withheld`: test cells call it at their top level.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import backdoor as bd
from ..answers import withheld
from .common import Instrumented, assert_close, quiet, silent

__all__ = [
    "IMAGE_SHAPE", "Instrumented", "LabelSpy", "TinyBackdoorNet", "assert_close",
    "backdoor_fixture", "match_images", "model_state", "quiet", "replay_schedule",
    "sgd_reference", "silent", "training_inputs",
]

#: The fixtures' image shape (not the course's 32x32, so nothing hard-coded passes).
IMAGE_SHAPE = (3, 8, 8)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyBackdoorNet(nn.Module):
    """A hand-built classifier for (N, 3, 8, 8) images in [0, 1], optionally backdoored.

    Clean logits: a linear read-out of the whole centred image through a batch norm (its
    running statistics make a forward pass in training mode visible). Backdoor: when the
    patch at ``(top, left)`` matches ``pattern`` (a (3, size, size) 0/1 tensor), a large
    smooth bonus goes to ``target``'s logit.
    """

    def __init__(self, num_classes: int = 4, *, target: int | None = None,
                 top: int = 5, left: int = 1, size: int = 2, seed: int = 0,
                 shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        g = _generator(seed)
        c, h, w = shape
        self.num_classes, self.target = num_classes, target
        self.top, self.left, self.size = top, left, size
        # Class k's evidence: the image's correlation with a +-1 template over every pixel,
        # so reaching a clean class takes a large mask (and one pixel moves little).
        templates = torch.randint(0, 2, (num_classes, c * h * w), generator=g).float() * 2 - 1
        self.register_buffer("templates", templates)
        self.readout = nn.Linear(c * h * w, num_classes)
        with torch.no_grad():
            self.readout.weight.copy_(templates * (20.0 / (c * h * w)))
            self.readout.bias.zero_()
        self.norm = nn.BatchNorm1d(num_classes, affine=False)
        pattern = (torch.rand(c, size, size, generator=g) < 0.5).float()
        pattern[0, 0, 0], pattern[0, 0, 1 % size] = 1.0, 0.0
        self.register_buffer("pattern", pattern)

    def trigger(self) -> bd.Trigger:
        """The planted trigger (a patch pasted with alpha 1)."""
        c = self.pattern.shape[0]
        h, w = IMAGE_SHAPE[1:]
        mask, full = torch.zeros(1, h, w), torch.zeros(c, h, w)
        rows = slice(self.top, self.top + self.size)
        cols = slice(self.left, self.left + self.size)
        mask[:, rows, cols] = 1
        full[:, rows, cols] = self.pattern
        return bd.Trigger(mask, full, 1.0, name="planted")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        logits = self.norm(self.readout((x - 0.5).flatten(1)))
        if self.target is None:
            return logits
        patch = x[:, :, self.top : self.top + self.size, self.left : self.left + self.size]
        sign = 2 * self.pattern - 1
        match = (patch * sign).flatten(1).sum(1) - self.pattern.sum()  # 0 on the pattern
        bonus = 14.0 * torch.sigmoid(match + 3.0)
        return logits + bonus[:, None] * nn.functional.one_hot(
            torch.tensor(self.target, device=x.device), self.num_classes).to(x.dtype)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def backdoor_fixture(target: int | None = 0, *, n: int = 48, seed: int = 0,
                     num_classes: int = 4, top: int = 5, left: int = 1
                     ) -> tuple[TinyBackdoorNet, torch.Tensor, torch.Tensor]:
    """``(model, x, y)``: a :class:`TinyBackdoorNet` (backdoored to ``target``, clean if
    None) in eval mode, ``n`` images it labels (as many of each class as possible), and
    those labels."""
    model = TinyBackdoorNet(num_classes, target=target, seed=seed, top=top, left=left).eval()
    g = _generator(seed + 100)
    drawn = torch.arange(8 * n) % num_classes
    strength = 0.2 + 0.15 * torch.rand(8 * n, 1, generator=g)
    pool = 0.5 + strength * model.templates[drawn] + 0.05 * torch.randn(
        8 * n, model.templates.shape[1], generator=g)
    pool = pool.clamp(0, 1).view(8 * n, *IMAGE_SHAPE)
    with torch.no_grad():
        labels = model(pool).argmax(1)
    per_class = -(-n // num_classes)
    chosen = torch.cat([torch.nonzero(labels == k).flatten()[:per_class]
                        for k in range(num_classes)])[:n]
    chosen = chosen[torch.randperm(len(chosen), generator=g)]
    return model, pool[chosen].clone(), labels[chosen].clone()


@withheld("Lab 3, task find_candidate_backdoor")
def replay_schedule(successes: Sequence[float], norms: Sequence[float], *, init_cost: float,
                    patience: int, cost_multiplier: float, attack_threshold: float,
                    early_stop_patience: int) -> dict[str, Any]:
    """The authors' schedule replayed over a run's per-epoch attack successes and mask norms.

    Returns ``costs`` (the cost each epoch must have used), ``stop`` (the number of epochs
    after which the run must have stopped early, or None) and ``best`` (the index of the
    epoch whose mask must be returned, or None when no epoch reached the threshold).
    """
    cost, above, below, stalled = init_cost, 0, 0, 0
    went_up = went_down = False
    smallest = reference = float("inf")
    best, costs, stop = None, [], None
    for epoch, (rate, size) in enumerate(zip(successes, norms, strict=True)):
        costs.append(cost)
        reached = rate >= attack_threshold
        if reached and size < smallest:
            smallest, best = size, epoch
        if smallest != float("inf"):
            stalled = stalled + 1 if smallest >= 0.99 * reference else 0
        reference = min(reference, smallest)
        if went_up and went_down and stalled >= early_stop_patience:
            stop = epoch + 1
            break
        above, below = (above + 1, 0) if reached else (0, below + 1)
        if above >= patience:
            above, cost, went_up = 0, cost * cost_multiplier, True
        elif below >= patience:
            below, cost, went_down = 0, cost / cost_multiplier ** 1.5, True
    return {"costs": costs, "stop": stop, "best": best}


class LabelSpy(nn.Module):
    """Wraps ``model``; records each forward's input and mode and, after a backward pass,
    the label each image was trained towards: the cross-entropy's gradient with respect to
    the logits is ``softmax - onehot(label)`` (times a positive scale), negative only at the
    label. Survives ``copy.deepcopy`` (the copy records into its own list)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.records: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's logits; records the call."""
        record: dict[str, Any] = {"input": x.detach().clone(), "training": self.training,
                                  "labels": None}
        self.records.append(record)
        out = self.inner(x)
        if out.requires_grad:
            def save(grad: torch.Tensor) -> None:
                record["labels"] = grad.detach().argmin(1).cpu()
            out.register_hook(save)
        return out


@dataclass
class Seen:
    """What a training loop fed a :class:`LabelSpy`: images and labels in order."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_sizes: list[int]
    all_training: bool
    batches: list[tuple[torch.Tensor, torch.Tensor]]


def training_inputs(spy: nn.Module) -> Seen:
    """The forward passes of ``spy`` (a :class:`LabelSpy`, or a copy of one) that were
    trained on (a backward pass reached them), in order."""
    records = getattr(spy, "records", None)
    if records is None:
        raise AssertionError("return the fine-tuned copy of the model you were given")
    used = [r for r in records if r["labels"] is not None]
    if not used:
        raise AssertionError("no training step reached the model")
    images = torch.cat([r["input"].cpu() for r in used])
    labels = torch.cat([r["labels"] for r in used])
    return Seen(images, labels, [len(r["input"]) for r in used],
                all(r["training"] for r in used),
                [(r["input"].cpu(), r["labels"]) for r in used])


@dataclass
class Matches:
    """For each seen image: which of ``x`` it came from, and whether it was stamped."""

    index: torch.Tensor
    stamped: torch.Tensor


def match_images(seen: torch.Tensor, x: torch.Tensor, stamped: torch.Tensor,
                 atol: float = 1e-5) -> Matches:
    """Match every image of ``seen`` to ``x[i]`` or ``stamped[i]`` (index -1: neither)."""
    flat_seen = seen.flatten(1).double()
    index = torch.full((len(seen),), -1, dtype=torch.long)
    is_stamped = torch.zeros(len(seen), dtype=torch.bool)
    for candidates, flag in ((x, False), (stamped, True)):
        gap = torch.cdist(flat_seen, candidates.flatten(1).double(), p=float("inf"))
        best = gap.min(1)
        hit = (best.values <= atol) & (index < 0)
        index[hit] = best.indices[hit]
        is_stamped[hit] = flag
    return Matches(index, is_stamped)


def sgd_reference(model: nn.Module, seen: Seen, *, lr: float,
                  momentum: float) -> dict[str, torch.Tensor]:
    """The state of ``model`` after SGD on the mean cross-entropy over ``seen``'s batches,
    in training mode, starting from ``model``'s weights."""
    replica = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(replica.parameters(), lr=lr, momentum=momentum)
    for images, labels in seen.batches:
        loss = nn.functional.cross_entropy(replica(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model_state(replica)
