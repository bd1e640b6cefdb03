"""Fixtures for Lab 5's test cells (backdoor attacks and Adversarial Neuron Pruning).

Everything is tiny (16x16 images, a few dozen samples, models of a few hundred weights),
seeded, and silent, so a test cell runs in well under a second. The fixtures:

- :func:`images`, :func:`balanced_labels`, :func:`soft_trigger`: data and a trigger whose
  mask and opacity are fractional, so the stamping formula is checked in full.
- :class:`BackdoorOracle` and :func:`oracle_data`: a stand-in backdoored classifier whose
  answers are known exactly (it reads the clean class from a pixel, and obeys a trigger on
  the images carrying a marker), so an attack-success rate can be computed by hand.
- :func:`mlp_classifier` and :func:`clean_label_data`: a small classifier and images it
  classifies correctly, some with a wide margin (they survive an eps-bounded attack).
- :func:`linear_classifier`: a two-class linear model, on which PGD that takes all its steps
  ends on a known corner of the eps-ball whatever its random start (so a run stopped early
  shows); :class:`OneSidedModel` and :func:`one_sided_data`: a model that PGD fools from half
  of its random starts only (so restarts show).
- :func:`bn_cnn`, :func:`anp_data`, :func:`neuron_layers`, :func:`perturbed_copy`: a tiny CNN
  with batch norm (its neurons are the BN channels), data labelled by it, and the reference
  meaning of "multiply the neurons' weights by ``mask + delta`` and biases by ``1 + xi``".
- :class:`CountingModel`: counts the images a model is asked to classify.
- :func:`silent` (from :mod:`.common`): wraps the calls of a student's code in a test cell.

:func:`perturbed_copy` answers part of a Lab 5 task, so it is
:func:`labsupport.answers.withheld`: test cells call it at their top level; a student's
function cannot.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .. import backdoor as bd
from ..answers import withheld
from .common import assert_close, quiet, silent

__all__ = [
    "CLEAN_LABEL_EPS", "IMAGE_SHAPE", "ONE_SIDED_EPS", "BackdoorOracle", "CountingModel",
    "OneSidedModel", "anp_data", "assert_close", "balanced_labels", "bn_cnn", "clean_label_data",
    "cross_entropy", "images", "linear_classifier", "mlp_classifier", "model_state",
    "neuron_layers", "one_sided_data", "oracle_data", "perturbed_copy", "quiet", "silent",
    "soft_trigger", "trigger_region",
]

#: The fixtures' image shape: small, and not the course's 32x32, so nothing hard-coded passes.
IMAGE_SHAPE = (3, 16, 16)
#: The clean-label fixture's L-inf budget: PGD misclassifies most, not all, of
#: :func:`clean_label_data`'s images within it (some resist).
CLEAN_LABEL_EPS = 0.08
#: The L-inf budget for :class:`OneSidedModel`: PGD fools it from half of its random starts.
ONE_SIDED_EPS = 0.1


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 40, *, shape: tuple[int, int, int] = IMAGE_SHAPE,
           seed: int = 0) -> torch.Tensor:
    """``n`` uniform random images in [0, 1]."""
    return torch.rand((n, *shape), generator=_generator(seed))


def balanced_labels(n: int = 40, *, classes: int = 4, seed: int = 0) -> torch.Tensor:
    """``n`` labels, as many of each class as possible, shuffled (seeded)."""
    labels = torch.arange(n) % classes
    return labels[torch.randperm(n, generator=_generator(seed))]


def soft_trigger(*, shape: tuple[int, int, int] = IMAGE_SHAPE, alpha: float = 0.3,
                 per_channel: bool = False, seed: int = 1) -> bd.Trigger:
    """A trigger with a fractional mask (values in [0, 1]) and fractional opacity."""
    g = _generator(seed)
    c, h, w = shape
    mask = torch.rand((c if per_channel else 1, h, w), generator=g)
    mask[..., : h // 2, :] = 0  # and exact zeros: the top half is never touched
    return bd.Trigger(mask, torch.rand(shape, generator=g), alpha, name="soft")


def trigger_region(trigger: bd.Trigger) -> torch.Tensor:
    """Boolean (H, W): where the trigger's mask is non-zero in any channel."""
    return (trigger.mask > 0).any(0)


# --------------------------------------------------------------------------------------
# A backdoored classifier with known answers


class BackdoorOracle(nn.Module):
    """A stand-in backdoored classifier on images of ``shape``.

    Clean behaviour: it predicts the class written in the centre pixel of channel 0
    (``round(value * (classes - 1))``). Backdoor: when the ``trigger`` is present (its
    pattern, at full opacity, everywhere under its mask) *and* the image carries the marker
    (centre pixel of channel 1 above 0.5), it predicts ``target`` instead. So on triggered
    images the attack succeeds exactly on the marked ones.

    With ``stamped`` (a batch of images), "the trigger is present" means instead "the image
    is one of ``stamped``": a model backdoored to whatever a given stamping function
    produces, so a test of attack success does not depend on that function being right.
    """

    def __init__(self, trigger: bd.Trigger, target: int, classes: int = 4,
                 stamped: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("region", (trigger.mask > 0).expand(trigger.shape).clone())
        self.register_buffer("pattern", trigger.pattern.clone())
        self.register_buffer("stamped", None if stamped is None else
                             stamped.detach().float().flatten(1).clone())
        self.target, self.classes = target, classes

    def triggered(self, x: torch.Tensor) -> torch.Tensor:
        if self.stamped is not None:
            gaps = (x.float().flatten(1)[:, None, :] - self.stamped[None]).abs().amax(2)
            return (gaps < 1e-5).any(1) if len(self.stamped) else torch.zeros(
                len(x), dtype=torch.bool, device=x.device)
        gap = ((x - self.pattern) * self.region).abs().flatten(1).amax(1)
        return gap < 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        clean = (x[:, 0, h, w] * (self.classes - 1)).round().long().clamp(0, self.classes - 1)
        obey = self.triggered(x) & (x[:, 1, h, w] > 0.5)
        pred = torch.where(obey, torch.full_like(clean, self.target), clean)
        return nn.functional.one_hot(pred, self.classes).float() * 10


def oracle_data(n: int = 40, *, shape: tuple[int, int, int] = IMAGE_SHAPE, classes: int = 4,
                marked: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels for :class:`BackdoorOracle`: the oracle classifies them correctly,
    and the first ``marked`` fraction of each class carries the marker."""
    x = images(n, shape=shape, seed=seed)
    y = balanced_labels(n, classes=classes, seed=seed)
    h, w = shape[1] // 2, shape[2] // 2
    x[:, 0, h, w] = y.float() / (classes - 1)
    rank = torch.zeros(n, dtype=torch.long)
    for c in range(classes):
        idx = torch.nonzero(y == c).flatten()
        rank[idx] = torch.arange(len(idx))
    counts = torch.bincount(y, minlength=classes)
    x[:, 1, h, w] = (rank < (counts[y].float() * marked).round()).float() * 0.5 + 0.25
    return x, y


# --------------------------------------------------------------------------------------
# Clean-label attack fixture


def mlp_classifier(*, shape: tuple[int, int, int] = IMAGE_SHAPE, classes: int = 4,
                   seed: int = 0) -> nn.Module:
    """A seeded two-layer perceptron on ``shape`` images (eval mode)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        size = shape[0] * shape[1] * shape[2]
        model = nn.Sequential(nn.Flatten(), nn.Linear(size, 32), nn.ReLU(), nn.Linear(32, classes))
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def clean_label_data(model: nn.Module, n: int = 32, *, shape: tuple[int, int, int] = IMAGE_SHAPE,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and the labels ``model`` gives them (so it is right on all of them)."""
    x = images(n, shape=shape, seed=seed)
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def linear_classifier(*, shape: tuple[int, int, int] = IMAGE_SHAPE, seed: int = 0) -> nn.Module:
    """A seeded two-class linear classifier (eval mode).

    With two classes the input gradient of the cross-entropy on label ``y`` always points
    along ``w[1 - y] - w[y]``, so an L-inf PGD run that takes all its steps (enough of them
    to cross the ball: 10 with the default step size) ends on the corner
    ``clip(x + eps * sign(w[1 - y] - w[y]), 0, 1)`` whatever its random start. A run stopped
    at its first misclassified iterate ends inside the ball.
    """
    generator = _generator(seed)
    size = shape[0] * shape[1] * shape[2]
    model = nn.Sequential(nn.Flatten(), nn.Linear(size, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn((2, size), generator=generator) * 0.1)
        model[1].bias.zero_()
    return model.eval()


class OneSidedModel(nn.Module):
    """Two classes; everything hinges on one pixel (channel 0, top-left), ``d = pixel - 0.5``.

    The logit margin of class 0 is ``1 - k * d**2`` with ``k = 200`` for ``d > 0`` and
    ``k = 50`` for ``d < 0``: at the images of :func:`one_sided_data` (``d = 0``, class 0)
    the gradient is zero, and within ``ONE_SIDED_EPS`` the margin only turns negative on the
    right. So PGD with a random start fools the model when the pixel's start is to the
    right (half of the starts), never from the clean image itself, and an independent random
    start per restart fools a sample with probability ``1 - 2**-restarts``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 0, 0, 0] - 0.5
        k = torch.where(d > 0, torch.full_like(d, 200.0), torch.full_like(d, 50.0))
        margin = 1 - k * d**2
        return torch.stack([margin / 2, -margin / 2], dim=1)


def one_sided_data(n: int = 48, *, shape: tuple[int, int, int] = IMAGE_SHAPE,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images for :class:`OneSidedModel` (its decisive pixel at 0.5), all of class 0, which the
    model classifies correctly."""
    x = images(n, shape=shape, seed=seed)
    x[:, 0, 0, 0] = 0.5
    return x, torch.zeros(n, dtype=torch.long)


class CountingModel(nn.Module):
    """Wraps a model and counts the images it is asked to classify (``images_seen``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(x)
        return self.inner(x)


# --------------------------------------------------------------------------------------
# ANP fixture


def bn_cnn(*, classes: int = 4, width: tuple[int, int] = (6, 8), seed: int = 0) -> nn.Module:
    """A tiny seeded CNN for 16x16 images with two conv blocks (conv, BatchNorm2d, ReLU,
    max-pool) and a linear head, in eval mode. Its BN layers are ``block1.1`` and
    ``block2.1``; their affine parameters and running statistics are randomised so every
    neuron's weight and bias matter."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        c1, c2 = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        model = nn.Sequential()
        model.add_module("block1", block(3, c1))
        model.add_module("block2", block(c1, c2))
        model.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(c2 * 16, classes)))
        for bn in neuron_layers(model).values():
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.3, 0.3)
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def anp_data(model: nn.Module, n: int = 48, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and the labels ``model`` gives them (eval mode): a clean split it fits."""
    x = images(n, seed=seed)
    with torch.no_grad():
        was = model.training
        model.eval()
        y = model(x).argmax(1)
        model.train(was)
    return x, y


def neuron_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """The model's BatchNorm2d layers by name: their channels are ANP's neurons."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


@withheld("Lab 5, task anp_perturb")
def perturbed_copy(model: nn.Module, mask: dict[str, torch.Tensor],
                   noise: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """A copy of ``model`` whose BN neurons compute with weight ``w * (mask + delta)`` and
    bias ``b * (1 + xi)`` (``noise[name] = (delta, xi)``; without noise: ``w * mask`` and
    ``b``) -- the reference meaning of ANP's masked, perturbed network."""
    out = copy.deepcopy(model)
    layers = neuron_layers(out)
    with torch.no_grad():
        for name, bn in layers.items():
            scale = mask[name].detach().clone()
            shift = torch.ones_like(scale)
            if noise is not None:
                scale = scale + noise[name][0].detach()
                shift = shift + noise[name][1].detach()
            bn.weight.mul_(scale)
            bn.bias.mul_(shift)
    return out


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (to check a model was not modified)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy as a float."""
    return nn.functional.cross_entropy(logits, y).item()
