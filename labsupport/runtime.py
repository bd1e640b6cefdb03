"""Where and how the labs run: device choice, seeding, determinism, timing, profiles."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .allocator import keep_freed_memory

DEVICE_ENV = "LABSUPPORT_DEVICE"
PROFILES = ("smoke", "cpu", "full")


class DeviceError(RuntimeError):
    """The requested device is unknown or not available; the message says what to do."""


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device the labs compute on: CUDA, then Apple MPS, then the CPU.

    ``prefer`` (or else the ``LABSUPPORT_DEVICE`` environment variable) overrides the
    choice, e.g. ``"cpu"`` to test a laptop run on a GPU machine; ``"auto"`` (or an empty
    value) means no override. An override that names an unknown or unavailable device
    raises :class:`DeviceError` instead of silently falling back.
    """
    keep_freed_memory()  # PyTorch on the CPU runs up to twice as fast (see labsupport.allocator)
    from_env = prefer is None
    choice = os.environ.get(DEVICE_ENV, "") if from_env else prefer
    where = f"{DEVICE_ENV}={choice!r}" if from_env else f"get_device({choice!r})"
    if isinstance(choice, str):
        choice = choice.strip()
    if choice and choice != "auto":
        try:
            device = torch.device(choice)
        except (RuntimeError, TypeError, ValueError) as error:
            raise DeviceError(
                f"{where} is not a device name ({error}). Use 'cpu', 'cuda', 'cuda:0', "
                f"'mps' or 'auto'."
            ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceError(
                    f"{where} asks for CUDA, but no CUDA GPU is visible. Unset it or set it "
                    "to 'cpu' (or 'auto')."
                )
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise DeviceError(
                    f"{where} asks for GPU {device.index}, but only "
                    f"{torch.cuda.device_count()} are visible. Use 'cuda:0'."
                )
        elif device.type == "mps" and not _mps_available():
            raise DeviceError(f"{where} asks for Apple MPS, which is not available here. "
                              "Unset it or set it to 'cpu'.")
        elif device.type not in ("cpu", "cuda", "mps"):
            raise DeviceError(f"{where}: the labs run on 'cpu', 'cuda' or 'mps', not "
                              f"{device.type!r}.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator seeded alike."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_deterministic(enabled: bool = True) -> None:
    """Ask PyTorch for deterministic kernels (slower on GPUs; the same result every run)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def under_autograder() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def resolve_profile(profile: str = "auto", device: torch.device | None = None) -> str:
    """Turn ``"auto"`` into a concrete profile.

    ``smoke`` under the autograder (``NBGRADER_EXECUTION`` set), ``full`` on CUDA,
    ``cpu`` otherwise. An explicit profile is validated and returned, except that the
    autograder always gets ``smoke`` so a submission grades in about a minute.
    """
    if profile not in (*PROFILES, "auto"):
        raise ValueError(
            f"Unknown profile {profile!r}: choose one of 'auto', 'smoke', 'cpu', 'full'."
        )
    if under_autograder():
        return "smoke"
    if profile != "auto":
        return profile
    device = device or get_device()
    return "full" if device.type == "cuda" else "cpu"


@dataclass
class Timer:
    """Wall-clock timer that synchronises the GPU so timings are honest.

    >>> with Timer() as t:
    ...     pass
    >>> t.seconds >= 0
    True
    """

    device: torch.device | None = None
    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Timer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A human-readable name of the device, for figures and results files."""
    device = device or get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
