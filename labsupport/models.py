"""The course model: a small CNN with normalisation inside, saved with its metadata."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

# Per-channel statistics of the CIFAR-10 training set; a good default for [0, 1] images.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel standardisation, so the model takes raw [0, 1] images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU, 2x2 max-pooling (halves the resolution)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(2),
    )


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"SimpleCNN expects a batch of RGB images shaped (N, 3, 32, 32); got "
            f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) or convert "
            "NHWC to NCHW with x.permute(0, 3, 1, 2)."
        )
    if x.shape[2:] != (32, 32):
        raise ValueError(f"SimpleCNN takes 32x32 images; got {tuple(x.shape[2:])}. Resize "
                         "them (torch.nn.functional.interpolate) first.")
    if not x.is_floating_point():
        raise ValueError(f"SimpleCNN takes float images in [0, 1]; got {x.dtype} (use "
                         "x.float() / 255).")


class SimpleCNN(nn.Module):
    """The course's "simple CNN": three conv blocks and a two-layer classifier.

    ``model.conv3`` is the last convolutional block before the classifier (the pruning
    and ANP labs work on it); ``SimpleCNN.LAST_CONV`` names it. Inside each block,
    index 0 is the convolution, 1 the batch norm, 2 the ReLU (whose output is the
    block's per-channel activation) and 3 the max-pooling.
    """

    LAST_CONV = "conv3"

    def __init__(
        self,
        num_classes: int = 4,
        *,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 256,
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
    ) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"SimpleCNN has three conv blocks; got channels={channels!r}.")
        self.num_classes = num_classes
        self.config = {
            "num_classes": num_classes,
            "channels": list(channels),
            "hidden": hidden,
            "mean": list(mean),
            "std": list(std),
        }
        c1, c2, c3 = channels
        self.normalize = Normalize(mean, std)
        self.conv1 = conv_block(3, c1)
        self.conv2 = conv_block(c1, c2)
        self.conv3 = conv_block(c2, c3)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * 4 * 4, hidden),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, num_classes),
        )

    @property
    def last_conv(self) -> nn.Sequential:
        """The last convolutional block before the classifier."""
        return getattr(self, self.LAST_CONV)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last conv block (after its ReLU, before pooling)."""
        _check_batch(x)
        x = self.conv2(self.conv1(self.normalize(x)))
        block = self.last_conv
        return block[2](block[1](block[0](x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a batch of [0, 1] images (N, 3, 32, 32)."""
        _check_batch(x)
        x = self.normalize(x)
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.classifier(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"SimpleCNN": SimpleCNN}

M = TypeVar("M", bound=type[nn.Module])


def register_architecture(cls: M) -> M:
    """Class decorator: let :func:`save_model` / :func:`load_model` handle ``cls``.

    The class must take its saved ``config`` (the ``config`` attribute, a dict of plain
    values) as keyword arguments."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def build_model(architecture: str = "SimpleCNN", **config: Any) -> nn.Module:
    """Instantiate a course architecture by name."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"Unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}."
        ) from None
    return cls(**config)


def _state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, buffer)
    return buffer.getvalue()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the usual permissions (umask applied).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    dataset: str,
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    """Save weights and metadata (architecture, config, dataset, seed, sha256) atomically.

    Returns the metadata that was written.
    """
    architecture = type(model).__name__
    if architecture not in ARCHITECTURES:
        raise ValueError(f"save_model saves registered architectures ({sorted(ARCHITECTURES)});"
                         f" got a {architecture}, which load_model could not rebuild. Decorate "
                         "its class with @labsupport.models.register_architecture.")
    reserved = {"architecture", "config", "dataset", "seed", "sha256"} & set(extra)
    if reserved:
        raise ValueError(f"Metadata keys {sorted(reserved)} are set by save_model itself.")
    weights = _state_bytes(model)
    meta = {
        **extra,
        "architecture": architecture,
        "config": getattr(model, "config", {}),
        "dataset": dataset,
        "seed": seed,
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    buffer = io.BytesIO()
    torch.save({"meta": meta, "weights": weights}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return meta


class CorruptModelFile(RuntimeError):
    """A saved model that cannot be read or whose checksum does not match."""


def load_model(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by :func:`save_model`, verifying its checksum.

    Returns ``(model, metadata)``; the model is in eval mode on ``map_location``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No saved model at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta, weights = payload["meta"], payload["weights"]
        if not isinstance(meta, dict) or not isinstance(weights, bytes):
            raise TypeError("expected a dict of metadata and the weights' bytes")
    except Exception as error:  # truncated zip, pickle error, missing keys
        raise CorruptModelFile(
            f"{path} is not a readable labsupport model file ({type(error).__name__}: "
            f"{error}). Delete it and rebuild it (for course assets: `labsupport assets "
            "build`)."
        ) from error
    digest = hashlib.sha256(weights).hexdigest()
    if digest != meta.get("sha256"):
        raise CorruptModelFile(
            f"{path}: the weights' sha256 {digest[:12]}… does not match the recorded "
            f"{str(meta.get('sha256'))[:12]}…; the file is corrupt. Delete it and rebuild it."
        )
    try:
        model = build_model(meta["architecture"], **meta.get("config", {}))
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:  # unknown architecture, config or weights that do not fit
        raise CorruptModelFile(
            f"{path}: the saved weights do not fit a {meta.get('architecture')!r} with "
            f"config {meta.get('config')} ({type(error).__name__}: {error}). Rebuild the file "
            "with this version of labsupport."
        ) from error
    model.to(map_location).eval()
    return model, meta


# --------------------------------------------------------------------------------------
# The digits CNN (Lab 6 and 7)

#: Pixel mean and standard deviation of the MNIST training set.
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


@register_architecture
class DigitsCNN(nn.Module):
    """A small CNN for 28x28 grey-scale digits: two conv blocks and a two-layer classifier.

    Takes (N, 1, 28, 28) images in [0, 1] (normalisation inside); ``model.conv2`` is the
    last convolutional block (``DigitsCNN.LAST_CONV``).
    """

    LAST_CONV = "conv2"

    def __init__(self, num_classes: int = 10, *, channels: Sequence[int] = (16, 32),
                 hidden: int = 128, mean: Sequence[float] = MNIST_MEAN,
                 std: Sequence[float] = MNIST_STD) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"DigitsCNN has two conv blocks; got channels={channels!r}.")
        self.num_classes = num_classes
        self.config = {"num_classes": num_classes, "channels": list(channels),
                       "hidden": hidden, "mean": list(mean), "std": list(std)}
        c1, c2 = channels
        self.normalize = Normalize(mean, std)
        self.conv1 = conv_block(1, c1)
        self.conv2 = conv_block(c1, c2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, num_classes),
        )

    @property
    def last_conv(self) -> nn.Sequential:
        """The last convolutional block before the classifier."""
        return getattr(self, self.LAST_CONV)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a batch of [0, 1] digit images (N, 1, 28, 28)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"DigitsCNN expects grey-scale digits shaped (N, 1, 28, 28); got "
                             f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0).")
        if not x.is_floating_point():
            raise ValueError(f"DigitsCNN takes float images in [0, 1]; got {x.dtype} (use "
                             "x.float() / 255).")
        return self.classifier(self.conv2(self.conv1(self.normalize(x))))
