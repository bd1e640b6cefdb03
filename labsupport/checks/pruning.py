"""Fixtures for Lab 4's test cells (the pruning defense against BadNets, Fine-Pruning).

Tiny, seeded and silent, so each test cell runs in well under a second:

- :func:`tiny_cnn`: a course :class:`~labsupport.models.SimpleCNN` with a dozen channels in
  its last block and random batch-norm parameters and statistics (some channels nearly
  dormant, some with a positive bias: zeroing their convolution does not silence them).
- :func:`images` and :func:`sweep_data`: random 32x32 images, labelled by the model itself
  with a fraction of the labels wrong (so the unpruned accuracy is well below 1 and a
  relative drop differs from a drop in points); 128 images, so every accuracy is a multiple
  of 1/128 and exact in floating point.
- :func:`count_images`: counts the images a module (e.g. ``model.conv1``) processes, also
  through deep copies of the model.
- :func:`reference_curve`: the validation accuracy after each pruning step, the slow way
  (prune a copy, run the whole model).
- :class:`TableModel`: a stand-in classifier whose class for each image is given (the
  image's first value is its index): B, B' and G with known answers.
- :func:`block_output`: the last block's output (after ReLU and pooling), the reference.
- :func:`silent`, :func:`assert_close` (from :mod:`.common`).

:func:`reference_curve` prunes with :func:`labsupport.pruning.prune_channels`, a withheld
answer: call it at a test cell's top level only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .. import pruning
from ..models import SimpleCNN
from .common import assert_close, quiet, silent

__all__ = ["TableModel", "assert_close", "block_output", "count_images", "images",
           "model_state", "quiet", "reference_curve", "silent", "sweep_data", "table_images",
           "teacher_data", "tiny_cnn"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_cnn(*, seed: int = 0, channels: Sequence[int] = (4, 6, 12), hidden: int = 16,
             num_classes: int = 4) -> SimpleCNN:
    """A small SimpleCNN in eval mode with random batch-norm parameters and statistics."""
    torch.manual_seed(seed)
    model = SimpleCNN(num_classes, channels=channels, hidden=hidden)
    g = _generator(seed + 1)
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for module in bns:  # running statistics of the fixture images, as after training
            module.reset_running_stats()
            module.momentum = None
        model.train()(images(64, seed=seed + 99))
        for module in bns:
            n = module.num_features
            module.momentum = 0.1
            module.weight.copy_(0.5 + torch.rand(n, generator=g))
            module.bias.copy_(torch.randn(n, generator=g) * 0.5)
        bn = model.last_conv[1]
        bn.bias[: bn.num_features // 4] = 0.4 + torch.rand(bn.num_features // 4, generator=g)
        bn.bias[-(bn.num_features // 4):] = -1.5  # nearly dormant channels
        for layer in (model.classifier[1], model.classifier[3]):  # every channel matters
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g)
                               * 3 / layer.weight.shape[1] ** 0.5)
            layer.bias.zero_()
    return model.eval()


def images(n: int = 128, *, seed: int = 0) -> torch.Tensor:
    """Random (n, 3, 32, 32) images in [0, 1]: a random colour per image, plus noise."""
    g = _generator(seed)
    colour = 0.1 + 0.8 * torch.rand(n, 3, 1, 1, generator=g)
    return (colour + 0.15 * torch.randn(n, 3, 32, 32, generator=g)).clamp(0, 1)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters and buffers."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sweep_data(model: nn.Module, n: int = 128, *, wrong: float = 0.4,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images labelled by ``model``, a fraction ``wrong`` of them with another class."""
    x = images(n, seed=seed)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    g = _generator(seed + 7)
    flip = torch.randperm(n, generator=g)[: round(wrong * n)]
    num_classes = model(x[:1]).shape[1]
    y[flip] = (y[flip] + torch.randint(1, num_classes, (len(flip),), generator=g)) % num_classes
    return x, y


def block_output(model: SimpleCNN, x: torch.Tensor) -> torch.Tensor:
    """The last conv block's output (after ReLU and pooling) in eval mode."""
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model.last_conv(model.conv2(model.conv1(model.normalize(x))))
        model.train(was)
    return out


@contextlib.contextmanager
def count_images(module: nn.Module, *, training: bool | None = None) -> Iterator[dict[str, int]]:
    """Count the images ``module`` processes inside the block (``counter["images"]``), in
    any mode or only in training (``training=True``) or eval mode. The hook is a plain
    closure, so deep copies of the model made inside the block count too."""
    counter = {"images": 0}
    active = [True]  # copies made inside the block keep the hook: it stops counting on exit

    def hook(m: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if active[0] and (training is None or m.training == training):
            counter["images"] += len(args[0])

    handle = module.register_forward_hook(hook)
    try:
        yield counter
    finally:
        active[0] = False
        handle.remove()


def reference_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    order: Sequence[int]) -> list[float]:
    """Accuracy on (x, y) after pruning the first k channels of ``order``, k = 0..len(order),
    each by pruning a copy and running the whole model (the slow, obvious way)."""
    curve = []
    for k in range(len(order) + 1):
        pruned = pruning.prune_channels(model, list(order[:k])).eval()
        with torch.no_grad():
            curve.append((pruned(x).argmax(1) == y).float().mean().item())
    return curve


class TableModel(nn.Module):
    """A classifier with known answers: image i (``x[i, 0]`` holds i, see
    :func:`table_images`) gets class ``classes[i]``; its logits are random apart from that
    class's, which is the largest. ``scale`` is a parameter (so it has one)."""

    def __init__(self, classes: Sequence[int], num_classes: int, *, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("classes", torch.as_tensor(list(classes), dtype=torch.long))
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))
        noise = torch.rand(len(self.classes), num_classes, generator=_generator(seed))
        self.register_buffer("noise", noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x[:, 0].round().long()
        logits = self.noise[index].clone()
        logits[torch.arange(len(index)), self.classes[index]] = 2.0
        return logits * self.scale


def table_images(n: int) -> torch.Tensor:
    """Inputs for :class:`TableModel`: (n, 2) with ``x[i, 0] = i``."""
    return torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)


def teacher_data(n: int = 96, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images labelled by another tiny CNN (a task a student CNN can learn quickly)."""
    teacher = tiny_cnn(seed=seed + 100)
    x = images(n, seed=seed + 3)
    with torch.no_grad():
        return x, teacher(x).argmax(1)
