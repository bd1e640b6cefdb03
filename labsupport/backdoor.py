"""Backdoor toolkit: triggers, stamping, poisoned datasets, attack success.

One call shape throughout, like :mod:`labsupport.attacks`: data first (``x`` images, ``y``
labels), then the :class:`Trigger`, then keyword-only knobs; evaluation functions take the
model first::

    trigger = bottom_right_trigger()                     # a Trigger(mask, pattern, alpha)
    x_trig = stamp(x, trigger)                           # new tensor, x untouched
    data = poison_dataset(x, y, trigger, target=0, rate=0.05, seed=0)   # PoisonedData
    asr = attack_success_rate(model, x_test, y_test, trigger, target=0)
    acc = clean_accuracy(model, x_test, y_test)

Stamping is ``x' = (1 - mask) * x + mask * ((1 - alpha) * x + alpha * pattern)``: ``alpha = 1``
pastes the pattern where the mask is 1 (BadNets), a full mask with ``alpha = 0.2`` blends it
into the whole image (Blend). Images are float (N, C, H, W) in [0, 1] on any device; a
trigger is moved to the images' device and dtype when it is applied.

Lab 5 has students write their own triggers, stamping, poisoning and attack-success code
(graded on behaviour); this module is the reference the later labs, the course's
pre-trained assets and the test fixtures use. Each function that answers a Lab 5 task is
marked :func:`labsupport.answers.withheld`: it works from library code, pytest and the top
level of a notebook cell, and raises :class:`labsupport.answers.WriteYourOwn` when called
from inside a function defined in a notebook (a student's answer).
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .answers import withheld
from .models import atomic_write_bytes
from .paths import course_asset
from .train import evaluate, predict

#: The committed Gaussian-noise trigger image (seed 0): ``assets/triggers/`` in a checkout.
GAUSSIAN_TRIGGER_PNG = course_asset("triggers", "gaussian-noise-seed0.png")
#: Mean and standard deviation of the Gaussian-noise pattern (before clipping to [0, 1]).
GAUSSIAN_MEAN, GAUSSIAN_STD = 0.5, 0.25
ELIGIBLE = ("non-target", "target", "all")
IMAGE_SHAPE = (3, 32, 32)

#: A per-sample transform applied to the chosen images before the trigger is stamped:
#: takes (images, labels) of the poisoned samples and returns images of the same shape.
PoisonTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------
# Triggers


def _check_unit(t: torch.Tensor, what: str) -> None:
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"Trigger {what} must lie in [0, 1]; got values in "
                         f"[{t.min().item():.3g}, {t.max().item():.3g}].")


@dataclass(frozen=True, eq=False)
class Trigger:
    """A backdoor trigger: where it goes (``mask``), what it looks like (``pattern``) and how
    opaque it is (``alpha``).

    Attributes:
        mask: (1, H, W) or (C, H, W) float tensor in [0, 1]; 1 where the trigger is applied.
        pattern: (C, H, W) float tensor in [0, 1]: the trigger's pixels.
        alpha: opacity in [0, 1] (1 pastes the pattern, 0.2 blends it in faintly).
        name: a label for figures and tables.
    """

    mask: torch.Tensor
    pattern: torch.Tensor
    alpha: float = 1.0
    name: str = "trigger"

    def __post_init__(self) -> None:
        for what, t in (("mask", self.mask), ("pattern", self.pattern)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"Trigger {what} must be a torch.Tensor; got {type(t).__name__}.")
            if t.dim() != 3:
                raise ValueError(f"Trigger {what} must be shaped (C, H, W) like one image; got "
                                 f"{tuple(t.shape)}.")
            if not t.is_floating_point():
                raise ValueError(f"Trigger {what} must be float in [0, 1]; got {t.dtype}.")
            _check_unit(t, what)
        if self.mask.shape[0] not in (1, self.pattern.shape[0]) or \
                self.mask.shape[1:] != self.pattern.shape[1:]:
            raise ValueError(f"Trigger mask {tuple(self.mask.shape)} does not fit pattern "
                             f"{tuple(self.pattern.shape)}: the mask must have the pattern's "
                             "height and width and 1 or the pattern's channels.")
        alpha = float(self.alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Trigger alpha must lie in [0, 1]; got {self.alpha}.")
        object.__setattr__(self, "alpha", alpha)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (C, H, W) shape of the images this trigger fits."""
        c, h, w = self.pattern.shape
        return (c, h, w)

    def with_alpha(self, alpha: float) -> Trigger:
        """The same trigger with another opacity."""
        return dataclasses.replace(self, alpha=alpha)

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Trigger:
        """The trigger with its tensors on ``device`` (and in ``dtype``)."""
        return dataclasses.replace(self, mask=self.mask.to(device=device, dtype=dtype),
                                   pattern=self.pattern.to(device=device, dtype=dtype))

    def __repr__(self) -> str:
        area = (self.mask > 0).any(0).float().mean().item()
        return (f"Trigger({self.name!r}, shape {self.shape}, alpha {self.alpha:g}, "
                f"covers {area:.1%} of the image)")


@withheld("Lab 5, task triggers")
def checkerboard(size: int) -> torch.Tensor:
    """A ``size`` x ``size`` checkerboard of 0s and 1s with 1 in the top-left corner."""
    idx = torch.arange(size)
    return ((idx[:, None] + idx[None, :]) % 2 == 0).float()


def _check_shape(image_shape: tuple[int, int, int], size: int) -> tuple[int, int, int]:
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W); got {image_shape!r}.")
    c, h, w = (int(v) for v in image_shape)
    if size < 1 or 2 * size > min(h, w):
        raise ValueError(f"A {size}x{size} trigger patch does not fit twice in a {h}x{w} "
                         "image; choose 1 <= size <= min(H, W) / 2.")
    return c, h, w


@withheld("Lab 5, task triggers")
def bottom_right_trigger(*, size: int = 3, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
                         alpha: float = 1.0) -> Trigger:
    """BadNets' trigger: a ``size`` x ``size`` black-and-white checkerboard in the image's
    bottom-right corner (the last ``size`` rows and columns), the same in every channel."""
    c, h, w = _check_shape(image_shape, size)
    mask, pattern = torch.zeros(1, h, w), torch.zeros(c, h, w)
    mask[:, h - size:, w - size:] = 1
    pattern[:, h - size:, w - size:] = checkerboard(size)
    return Trigger(mask, pattern, alpha, name="bottom-right")


@withheld("Lab 5, task triggers")
def four_corner_trigger(*, size: int = 3, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
                        alpha: float = 1.0) -> Trigger:
    """A ``size`` x ``size`` checkerboard in each of the four corners, mirrored so the whole
    pattern is symmetric (the trigger of Turner et al.'s clean-label attack)."""
    c, h, w = _check_shape(image_shape, size)
    board = checkerboard(size)
    mask, pattern = torch.zeros(1, h, w), torch.zeros(c, h, w)
    top, bottom, left, right = slice(0, size), slice(h - size, h), slice(0, size), slice(w - size, w)
    corners = [(top, left, board), (top, right, board.flip(1)),
               (bottom, left, board.flip(0)), (bottom, right, board.flip(0, 1))]
    for rows, cols, patch in corners:
        mask[:, rows, cols] = 1
        pattern[:, rows, cols] = patch
    return Trigger(mask, pattern, alpha, name="four-corner")


@withheld("Lab 5, task triggers")
def gaussian_noise_pattern(*, seed: int = 0,
                           image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """A full-image Gaussian-noise pattern, N(0.5, 0.25^2) clipped to [0, 1] and rounded to
    8 bits (so it round-trips through a PNG exactly), deterministic in ``seed``.

    Drawn with NumPy's legacy ``RandomState``, whose stream NumPy keeps fixed across
    versions, so the same seed gives the same pattern everywhere.
    """
    c, h, w = _check_shape(image_shape, 1)
    noise = np.random.RandomState(seed).normal(GAUSSIAN_MEAN, GAUSSIAN_STD, size=(c, h, w))
    pixels = np.round(np.clip(noise, 0.0, 1.0) * 255).astype(np.uint8)
    return torch.from_numpy(pixels).float() / 255


@withheld("Lab 5, task triggers")
def gaussian_noise_trigger(*, seed: int = 0, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
                           alpha: float = 0.2) -> Trigger:
    """Blend's trigger (Chen et al., 2017): a full mask and a Gaussian-noise pattern
    (:func:`gaussian_noise_pattern`), blended in with opacity ``alpha``."""
    pattern = gaussian_noise_pattern(seed=seed, image_shape=image_shape)
    return Trigger(torch.ones(1, *pattern.shape[1:]), pattern, alpha, name="gaussian-noise")


def save_pattern_png(pattern: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write a (C, H, W) pattern in [0, 1] as an 8-bit RGB (or grey) PNG, atomically."""
    import io

    from PIL import Image

    if pattern.dim() != 3 or pattern.shape[0] not in (1, 3):
        raise ValueError(f"pattern must be shaped (1 or 3, H, W); got {tuple(pattern.shape)}.")
    _check_unit(pattern, "pattern")
    pixels = (pattern.detach().cpu() * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_pattern_png(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a PNG written by :func:`save_pattern_png` back as a (C, H, W) float pattern."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels)).float() / 255


def blend_trigger(*, alpha: float = 0.2, path: str | os.PathLike[str] | None = None,
                  image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> Trigger:
    """Blend's trigger as the ANP authors' code builds it: a full mask and the committed
    Gaussian-noise image (:data:`GAUSSIAN_TRIGGER_PNG`, the reference's
    ``cifar_gaussian_noise.png``), blended in with opacity ``alpha``.

    Loading the image, rather than drawing the noise again, keeps the trigger identical on
    every machine and in every lab that uses it.
    """
    path = Path(path) if path is not None else GAUSSIAN_TRIGGER_PNG
    if not path.is_file():
        raise FileNotFoundError(f"No trigger image {path}: it is committed as "
                                "assets/triggers/gaussian-noise-seed0.png (reinstall labsupport).")
    pattern = load_pattern_png(path)
    if tuple(pattern.shape) != tuple(image_shape):
        raise ValueError(f"The trigger image {path.name} is shaped {tuple(pattern.shape)}, the "
                         f"images {tuple(image_shape)}: use a dataset of {tuple(pattern.shape)} "
                         "images or draw a pattern of the right shape.")
    return Trigger(torch.ones(1, *pattern.shape[1:]), pattern, alpha, name="gaussian-noise")


def neuron_order(mask: dict[str, torch.Tensor]) -> list[tuple[str, int, float]]:
    """ANP's pruning order: every neuron as (layer name, index, mask value), smallest mask
    first (ties by layer, then index), as the authors' ``prune_neuron_cifar.py`` sorts them."""
    rows = [(name, index, float(value)) for name, values in mask.items()
            for index, value in enumerate(values.detach().flatten().cpu().tolist())]
    return sorted(rows, key=lambda row: (row[2], row[0], row[1]))


# --------------------------------------------------------------------------------------
# Stamping


def _check_batch(x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{what} must be a batch of images shaped (N, C, H, W); got "
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}. Add a batch "
                         "dimension with x.unsqueeze(0).")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point in [0, 1]; got {x.dtype}. Convert "
                         "uint8 images with x.float() / 255.")


def _check_fits(x: torch.Tensor, trigger: Trigger) -> None:
    if not isinstance(trigger, Trigger):
        raise ValueError(f"trigger must be a labsupport.backdoor.Trigger; got "
                         f"{type(trigger).__name__}.")
    if tuple(x.shape[1:]) != trigger.shape:
        raise ValueError(f"The trigger fits images shaped {trigger.shape}, but x holds images "
                         f"shaped {tuple(x.shape[1:])}. Build the trigger with "
                         f"image_shape={tuple(x.shape[1:])}.")


@withheld("Lab 5, task stamp")
def stamp(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    """Apply ``trigger`` to a batch of images, returning a new tensor (``x`` is not modified).

    ``x' = (1 - mask) * x + mask * ((1 - alpha) * x + alpha * pattern)``, computed as
    ``x * (1 - alpha * mask) + alpha * mask * pattern``: the two image-sized factors are
    formed once per call and the batch takes one fused ``torch.addcmul`` on ``x``'s device
    (exact where the mask is 0, and where ``alpha * mask`` is 1). The result stays in
    [0, 1] when ``x`` does (a convex combination).
    """
    _check_batch(x)
    _check_fits(x, trigger)
    weight = trigger.mask.to(device=x.device, dtype=x.dtype) * trigger.alpha
    shift = weight * trigger.pattern.to(device=x.device, dtype=x.dtype)
    return torch.addcmul(shift, x, 1 - weight)


# --------------------------------------------------------------------------------------
# Poisoning


@dataclass(frozen=True, eq=False)
class PoisonedData:
    """A poisoned training set and the record of what was poisoned.

    Attributes:
        x, y: all images and labels (poisoned ones included), in the original order.
        indices: sorted int64 indices of the poisoned samples.
        target: the attack's target class.
        trigger: the trigger that was stamped.
        relabeled: whether poisoned samples were relabelled to ``target``.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    target: int
    trigger: Trigger
    relabeled: bool

    @property
    def rate(self) -> float:
        """Fraction of the whole set that is poisoned."""
        return len(self.indices) / max(len(self.x), 1)

    @property
    def is_poisoned(self) -> torch.Tensor:
        """Boolean (N,) tensor, True at the poisoned samples."""
        flags = torch.zeros(len(self.x), dtype=torch.bool)
        flags[self.indices] = True
        return flags

    def __repr__(self) -> str:
        return (f"PoisonedData({len(self.indices)} of {len(self.x)} samples poisoned "
                f"({self.rate:.1%}), target {self.target}, trigger {self.trigger.name!r}, "
                f"{'relabelled' if self.relabeled else 'labels kept'})")


def _check_labels(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"y must hold one integer label per image: x has {len(x)} images, y "
                         f"has shape {tuple(getattr(y, 'shape', ()))}.")
    if y.is_floating_point():
        raise ValueError(f"y must hold integer class labels; got {y.dtype}.")


def _check_target(target: int, y: torch.Tensor, num_classes: int | None) -> int:
    try:
        if isinstance(target, bool):
            raise TypeError
        target = operator.index(target)
    except TypeError:
        raise ValueError(f"target must be a class index (an int); got {target!r}.") from None
    known = num_classes if num_classes is not None else int(y.max().item()) + 1 if len(y) else 0
    if not 0 <= target < known:
        where = "" if num_classes is not None else " (the classes present in y)"
        raise ValueError(f"Unknown target class {target}: the classes are 0..{known - 1}{where}.")
    return target


@withheld("Lab 5, task poison_dataset")
def eligible_indices(y: torch.Tensor, *, target: int, eligible: str = "non-target") -> torch.Tensor:
    """Indices of the samples an attack may poison: ``"non-target"`` (BadNets, Blend),
    ``"target"`` (clean-label attacks) or ``"all"``."""
    if eligible not in ELIGIBLE:
        raise ValueError(f"eligible must be one of {ELIGIBLE}; got {eligible!r}.")
    y = y.cpu()
    if eligible == "non-target":
        return torch.nonzero(y != target).flatten()
    if eligible == "target":
        return torch.nonzero(y == target).flatten()
    return torch.arange(len(y))


@withheld("Lab 5, task poison_dataset")
def poison_dataset(
    x: torch.Tensor,
    y: torch.Tensor,
    trigger: Trigger,
    *,
    target: int,
    rate: float,
    eligible: str = "non-target",
    relabel: bool = True,
    transform: PoisonTransform | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> PoisonedData:
    """Poison ``round(rate * len(x))`` samples drawn (seeded) from the eligible ones.

    Each chosen image is optionally transformed (``transform(images, labels)``, e.g. the
    clean-label attack's adversarial perturbation), then stamped with ``trigger``; its
    label becomes ``target`` when ``relabel`` is true and is kept otherwise. The other
    samples are returned unchanged; ``x`` and ``y`` themselves are never modified.

    Args:
        x, y: training images (N, C, H, W) in [0, 1] and integer labels.
        trigger: the :class:`Trigger` to stamp.
        target: the target class. rate: the poisoned fraction of the *whole* set, in [0, 1].
        eligible: ``"non-target"`` (BadNets, Blend), ``"target"`` (clean-label) or ``"all"``.
        relabel: set poisoned labels to ``target`` (dirty-label attacks) or keep them.
        transform: per-sample transform applied before stamping (same shape out, in [0, 1]).
        num_classes: the number of classes, to validate ``target`` (default: from ``y``).
        seed: seeds the choice of samples.

    Returns a :class:`PoisonedData` recording the poisoned indices.
    """
    _check_batch(x)
    _check_labels(x, y)
    _check_fits(x, trigger)
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be a fraction in [0, 1]; got {rate}.")
    target = _check_target(target, y, num_classes)
    candidates = eligible_indices(y, target=target, eligible=eligible)
    n_poison = int(round(float(rate) * len(x)))
    if n_poison > len(candidates):
        raise ValueError(f"rate {rate} asks for {n_poison} poisoned samples, but only "
                         f"{len(candidates)} are eligible ({eligible}); lower the rate.")
    generator = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:n_poison]]
    indices = chosen.sort().values
    x_out, y_out = x.clone(), y.clone()
    if n_poison:
        index = indices.to(x.device)
        images = x[index]
        if transform is not None:
            images = transform(images, y[indices.to(y.device)])
            if not isinstance(images, torch.Tensor) or images.shape != x[index].shape:
                raise ValueError("transform must return a tensor of the images' shape "
                                 f"{tuple(x[index].shape)}; got "
                                 f"{tuple(getattr(images, 'shape', ()))}.")
            if images.min() < 0 or images.max() > 1:
                raise ValueError("transform returned images outside [0, 1]; clip them.")
        x_out[index] = stamp(images.to(x.device, x.dtype), trigger)
        if relabel:
            y_out[indices.to(y.device)] = target
    return PoisonedData(x_out, y_out, indices, target, trigger, relabel)


@withheld("Lab 5, task poison_dataset")
def badnets(x: torch.Tensor, y: torch.Tensor, *, target: int, rate: float = 0.05,
            trigger: Trigger | None = None, seed: int = 0) -> PoisonedData:
    """BadNets (Gu et al., 2017): stamp the bottom-right trigger (alpha 1) on non-target
    samples and relabel them to ``target``."""
    trigger = trigger or bottom_right_trigger(image_shape=tuple(x.shape[1:]))
    return poison_dataset(x, y, trigger, target=target, rate=rate, eligible="non-target",
                          relabel=True, seed=seed)


@withheld("Lab 5, task poison_dataset")
def blend(x: torch.Tensor, y: torch.Tensor, *, target: int, rate: float = 0.05,
          trigger: Trigger | None = None, seed: int = 0) -> PoisonedData:
    """Blend (Chen et al., 2017): blend the Gaussian-noise trigger (alpha 0.2, full mask)
    into non-target samples and relabel them to ``target``."""
    trigger = trigger or gaussian_noise_trigger(image_shape=tuple(x.shape[1:]))
    return poison_dataset(x, y, trigger, target=target, rate=rate, eligible="non-target",
                          relabel=True, seed=seed)


# --------------------------------------------------------------------------------------
# Evaluation


@withheld("Lab 5, task attack_success")
def attack_test_set(x: torch.Tensor, y: torch.Tensor, trigger: Trigger, *,
                    target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The attack-success test set: the images whose true label is *not* ``target``, with
    the trigger stamped, and their true labels."""
    _check_batch(x)
    _check_labels(x, y)
    keep = (y != int(target)).to(x.device)
    return stamp(x[keep], trigger), y[keep.to(y.device)]


@withheld("Lab 5, task attack_success")
def attack_success_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, trigger: Trigger,
                        *, target: int, batch_size: int = 512) -> float:
    """Fraction of triggered non-target test images that ``model`` classifies as ``target``.

    Images whose true label is ``target`` are excluded (they would count as successes
    without any backdoor).
    """
    x_trig, _ = attack_test_set(x, y, trigger, target=target)
    if len(x_trig) == 0:
        raise ValueError(f"No test image has a label other than the target {target}.")
    return (predict(model, x_trig, batch_size=batch_size) == int(target)).float().mean().item()


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                   batch_size: int = 512) -> float:
    """Accuracy of ``model`` on clean (untriggered) images, in [0, 1]."""
    return evaluate(model, x, y, batch_size=batch_size)
