"""Fixtures for Lab 7's test cells (input-level defenses, defensive distillation, adaptive attacks).

Everything is tiny and seeded, so a test cell runs in well under a second:

- :func:`images`, :func:`labels`, :func:`eight_bit`: random images (also on the 8-bit grid).
- :func:`box_blur`: a 3x3 mean filter, a squeezer for the squeezing tests.
- :func:`median_reference`: ``scipy.ndimage.median_filter(mode="reflect")`` per image and
  channel, the reference for the batched median filter.
- :func:`squeezing_reference`: Xu et al.'s score computed the slow way (one image at a time).
- :class:`FeatureCNN` and :func:`detector_data`: a small CNN with batch norm and a
  ``last_conv`` block, whose first filters are high-pass, and clean (smooth) images with
  "adversarial" copies (sign noise) that its features tell apart.
- :class:`BiasModel`: a model whose logits are a learned vector, the same for every input, so
  training it to convergence at temperature ``T`` ends at a known point
  (``softmax(b / T)`` equals the targets' mean); :class:`LinearModel`, :class:`FixedTeacher`.
- :class:`DropoutModel`: a model whose training-mode output differs from its eval output.
- :func:`linear_classifier`, :class:`Flip`: a linear model and a defense whose gradient the
  straight-through estimator gets visibly wrong (a horizontal flip), so BPDA shows.
- :class:`SaturatedModel`: a model with huge logits: cross-entropy's gradient underflows to 0
  (the distilled model's gradient masking), the logit margin's does not.

The references answer parts of Lab 7's tasks, so they are
:func:`labsupport.answers.withheld`: test cells call them at their top level only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..answers import withheld
from .common import assert_close, quiet, silent

__all__ = [
    "IMAGE_SHAPE", "BiasModel", "DropoutModel", "FeatureCNN", "FixedTeacher", "Flip",
    "LinearModel", "SaturatedModel", "assert_close", "box_blur", "detector_data", "eight_bit", "images",
    "labels", "linear_classifier", "median_reference", "model_state", "quiet", "silent",
    "squeezing_reference",
]

#: The fixtures' image shape: small and not a course shape, so nothing hard-coded passes.
IMAGE_SHAPE = (3, 12, 10)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 6, *, shape: tuple[int, ...] = IMAGE_SHAPE, seed: int = 0) -> torch.Tensor:
    """``n`` uniform random images in [0, 1]."""
    return torch.rand((n, *shape), generator=_generator(seed))


def eight_bit(n: int = 6, *, shape: tuple[int, ...] = IMAGE_SHAPE, seed: int = 0) -> torch.Tensor:
    """``n`` random images whose values lie on the 8-bit grid k / 255."""
    return torch.randint(0, 256, (n, *shape), generator=_generator(seed)).float() / 255


def labels(n: int, classes: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` random labels in ``0..classes-1``."""
    return torch.randint(0, classes, (n,), generator=_generator(seed))


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict (weights and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def box_blur(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 mean filter (edge pixels repeated): a squeezer that is no lab's answer."""
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    return nn.functional.avg_pool2d(padded, 3, stride=1)


@withheld("Lab 7, task spatial_smoothing")
def median_reference(x: torch.Tensor, window: int) -> torch.Tensor:
    """SciPy's median filter (``mode="reflect"``), one image and channel at a time."""
    from scipy import ndimage

    array = x.detach().cpu().double().numpy()
    out = np.empty_like(array)
    for index in np.ndindex(*array.shape[:-2]):
        out[index] = ndimage.median_filter(array[index], size=window, mode="reflect")
    return torch.from_numpy(out).to(x.dtype)


@withheld("Lab 7, task feature_squeezing")
def squeezing_reference(model: nn.Module, x: torch.Tensor, squeezers: list) -> torch.Tensor:
    """Xu et al.'s score, one image at a time: max over squeezers of the L1 distance between
    the model's softmax on the image and on its squeezed version."""
    scores = []
    with torch.no_grad():
        for image in x:
            batch = image[None]
            p = torch.softmax(model(batch).double(), dim=1)[0]
            gaps = [float(np.abs((p - torch.softmax(model(s(batch)).double(), dim=1)[0])
                                 .numpy()).sum()) for s in squeezers]
            scores.append(max(gaps))
    return torch.tensor(scores, dtype=torch.float64)


# --------------------------------------------------------------------------------------
# The binary detector's fixtures


class FeatureCNN(nn.Module):
    """A seeded small CNN with batch norm for ``(N, channels, H, W)`` images: two conv blocks
    (``block1``, and ``last_conv`` whose output, ``(N, width, H, W)``, holds the features),
    then the spatial average and a linear layer to the logits.

    Its first filters are high-pass (a Laplacian in each input channel), so the average of
    its features tells smooth images from images with sign noise added.
    """

    def __init__(self, channels: int = 3, width: int = 6, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.block1 = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                        nn.BatchNorm2d(width), nn.ReLU())
            self.block2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                        nn.BatchNorm2d(width), nn.ReLU())
            self.fc = nn.Linear(width, classes)
        finally:
            torch.random.set_rng_state(state)
        laplacian = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
        conv1 = self.block1[0]
        with torch.no_grad():
            for out in range(min(width, channels)):
                conv1.weight[out] = 0
                conv1.weight[out, out] = 4 * laplacian
                conv1.bias[out] = 0
            # Non-trivial batch-norm statistics, so a training-mode pass changes them.
            for bn in (self.block1[1], self.block2[1]):
                bn.running_mean.uniform_(-0.1, 0.1, generator=_generator(seed + 1))
                bn.running_var.uniform_(0.5, 1.5, generator=_generator(seed + 2))
        self.eval()

    @property
    def last_conv(self) -> nn.Sequential:
        """The last convolutional block (the course models' name for it)."""
        return self.block2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the spatially averaged output of the last block."""
        return self.fc(self.last_conv(self.block1(x)).mean(dim=(2, 3)))


def _smooth(n: int, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand((n, shape[0], 3, 3), generator=g)
    return nn.functional.interpolate(coarse, size=shape[1:], mode="bilinear",
                                     align_corners=True).clamp(0.1, 0.9)


def detector_data(n: int = 96, *, shape: tuple[int, ...] = IMAGE_SHAPE, eps: float = 0.1,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` smooth clean images and ``n`` "adversarial" ones (other smooth images with
    L-inf sign noise of size ``eps``), which :class:`FeatureCNN`'s features separate."""
    g = _generator(seed)
    clean = _smooth(n, shape, g)
    noisy = _smooth(n, shape, g)
    sign = torch.randint(0, 2, noisy.shape, generator=g).float() * 2 - 1
    return clean, (noisy + eps * sign).clamp(0, 1)


# --------------------------------------------------------------------------------------
# Distillation's fixtures


class BiasModel(nn.Module):
    """Logits = a learned vector ``bias`` (zeros at first), the same for every input."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``bias`` repeated for every input (differentiable in ``bias``)."""
        return self.bias.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


class LinearModel(nn.Module):
    """A seeded linear classifier on flattened inputs."""

    def __init__(self, features: int, classes: int = 3, *, seed: int = 0) -> None:
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.linear = nn.Linear(features, classes)
        finally:
            torch.random.set_rng_state(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``W x + b`` of the flattened input."""
        return self.linear(x.flatten(1))


class FixedTeacher(nn.Module):
    """A fixed (untrainable) classifier: logits ``scale * (W x)`` for a seeded ``W``."""

    def __init__(self, features: int, classes: int = 3, *, scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn((classes, features), generator=_generator(seed)))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the flattened input."""
        return self.scale * x.flatten(1) @ self.weight.T


class DropoutModel(nn.Module):
    """A linear classifier behind a dropout layer (p = 0.5): its output in training mode is
    random, in evaluation mode deterministic."""

    def __init__(self, features: int, classes: int = 3, *, seed: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.linear = LinearModel(features, classes, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the flattened input after dropout."""
        return self.linear(self.dropout(x.flatten(1)))


# --------------------------------------------------------------------------------------
# Adaptive attacks' fixtures


def linear_classifier(shape: tuple[int, ...] = IMAGE_SHAPE, classes: int = 3, *,
                      seed: int = 0) -> nn.Module:
    """A seeded linear classifier on images (flattened)."""
    return LinearModel(int(np.prod(shape)), classes, seed=seed)


class Flip(nn.Module):
    """A "defense" that flips images left-right: differentiable, not the identity, so the
    straight-through gradient (taken at its output, not flipped back) differs from the true
    one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` flipped along its last dimension."""
        return x.flip(-1)


class SaturatedModel(nn.Module):
    """A linear classifier whose logits are multiplied by ``scale`` (1e4): its softmax is
    one-hot in float32, so cross-entropy's gradient underflows to exactly 0 on the images
    it classifies correctly, while the logits' gradient does not."""

    def __init__(self, shape: tuple[int, ...] = IMAGE_SHAPE, classes: int = 3, *,
                 scale: float = 1e4, seed: int = 0) -> None:
        super().__init__()
        self.inner = linear_classifier(shape, classes, seed=seed)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The linear classifier's logits times ``scale``."""
        return self.scale * self.inner(x)


# Keep the common helpers importable from here, as the other labs' fixture modules do.
_ = (assert_close, quiet, silent)
