"""The course dataset: CIFAR-10's {airplane, automobile, ship, truck}, or its offline stand-in.

``load_course_data(dataset)`` accepts

- ``"cifar4"``: the CIFAR-10 subset, built once from the official archive (downloaded through
  torchvision when online) into a checksummed ``dataset-full.npz`` cache;
- a path to a ``dataset-full.npz`` (arrays ``x_train, y_train, x_test, y_test``; images uint8
  NHWC or float NCHW in [0, 1]);
- ``"synthetic"``: the embedded, procedurally generated dataset (:mod:`labsupport.synthetic`);
- ``"auto"``: ``cifar4`` when cached or downloadable, else ``synthetic`` (with one notice).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .models import atomic_write_bytes
from .synthetic import SYNTHETIC_CLASSES, synthetic_dataset

CIFAR4_CLASSES = ("airplane", "automobile", "ship", "truck")
#: Indices of the four classes among CIFAR-10's ten labels.
CIFAR10_INDICES = (0, 1, 8, 9)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CACHE_ENV = "LABSUPPORT_CACHE"
KEYS = ("x_train", "y_train", "x_test", "y_test")
DATASETS = ("auto", "cifar4", "synthetic")


class DatasetError(RuntimeError):
    """The course dataset is missing, corrupt or malformed; the message says what to do."""


@dataclass(frozen=True)
class CourseData:
    """Train and test tensors (float32 NCHW in [0, 1], int64 labels) and the class names."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> CourseData:
        """The first ``n_train`` training and ``n_test`` test images (the data is shuffled)."""
        return CourseData(self.x_train[:n_train], self.y_train[:n_train],
                          self.x_test[:n_test], self.y_test[:n_test], self.classes, self.name)

    def __repr__(self) -> str:
        return (f"CourseData({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} "
                f"test images, classes {self.classes})")


def cache_dir() -> Path:
    """Where datasets and assets are cached: ``$LABSUPPORT_CACHE`` or ``~/.cache/labsupport``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "labsupport"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Validation and conversion


def _to_tensors(arrays: dict[str, np.ndarray], source: str) -> tuple[torch.Tensor, ...]:
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DatasetError(
            f"{source} lacks the arrays {missing}; a course dataset file holds "
            f"{', '.join(KEYS)}. Rebuild it with load_course_data('cifar4') or check the path."
        )
    out = []
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        out.extend(_images_to_tensor(x, f"{source}: x_{split}"))
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{source}: y_{split} must hold one label per image "
                               f"({len(x)}); got shape {y.shape}.")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{source}: y_{split} must hold integer labels; got {y.dtype}.")
        out.append(torch.from_numpy(y.astype(np.int64)))
    return tuple(out)


def _images_to_tensor(x: np.ndarray, what: str) -> list[torch.Tensor]:
    if x.ndim != 4:
        raise DatasetError(f"{what} must be a 4-d image array (N, 32, 32, 3) uint8 or "
                           f"(N, 3, 32, 32) float; got shape {x.shape}.")
    if x.dtype == np.uint8:
        if x.shape[-1] != 3:
            raise DatasetError(f"{what}: uint8 images must be NHWC with 3 channels; got "
                               f"shape {x.shape}.")
        return [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float() / 255]
    if np.issubdtype(x.dtype, np.floating):
        if x.shape[1] != 3:
            raise DatasetError(f"{what}: float images must be NCHW with 3 channels; got "
                               f"shape {x.shape}.")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DatasetError(f"{what}: float images must lie in [0, 1]; got values in "
                               f"[{x.min():.3g}, {x.max():.3g}]. Divide uint8 pixels by 255.")
        return [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))]
    raise DatasetError(f"{what}: images must be uint8 or float; got dtype {x.dtype}.")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except Exception as error:  # truncated zip, bad CRC, not a zip at all
        raise DatasetError(
            f"{path} is not a readable .npz file ({type(error).__name__}: {error}); it may be "
            "truncated or corrupt. Delete it and build it again (load_course_data('cifar4') "
            "online), or point to a good copy."
        ) from error


def load_npz(path: str | os.PathLike[str], *, classes: tuple[str, ...] = CIFAR4_CLASSES,
             expected_sha256: str | None = None) -> CourseData:
    """Load and validate a ``dataset-full.npz`` (optionally checking its sha256)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"No dataset file at {path}. Give the path to a dataset-full.npz, "
                           "or use dataset='synthetic' to work offline.")
    if expected_sha256 is not None:
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise DatasetError(f"{path}: sha256 {digest[:12]}… does not match the recorded "
                               f"{expected_sha256[:12]}…; the cache is corrupt. Delete it and "
                               "build it again.")
    x_train, y_train, x_test, y_test = _to_tensors(_read_npz(path), str(path))
    labels = torch.cat([y_train, y_test])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{path}: labels must lie in 0..{len(classes) - 1} "
                           f"({', '.join(classes)}); got {labels.min()}..{labels.max()}.")
    return CourseData(x_train, y_train, x_test, y_test, classes, str(path))


# --------------------------------------------------------------------------------------
# CIFAR-10 → cifar4


def _read_cifar_batches(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        with open(root / "cifar-10-batches-py" / name, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def cifar4_from_archive(root: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The four-class subset, in the seed layout (uint8 NHWC, labels 0..3), from an extracted
    official CIFAR-10 python archive under ``root`` (as torchvision downloads it)."""
    root = Path(root)
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out: dict[str, np.ndarray] = {}
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(CIFAR10_INDICES)] = np.arange(len(CIFAR10_INDICES))
    for split, names in splits.items():
        x, y = _read_cifar_batches(root, names)
        keep = remap[y] >= 0
        out[f"x_{split}"] = np.ascontiguousarray(x[keep].transpose(0, 2, 3, 1))
        out[f"y_{split}"] = remap[y[keep]]
    return out


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def cifar4_path(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or cache_dir()) / "cifar4" / "dataset-full.npz"


def build_cifar4(root: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Build the cached ``dataset-full.npz`` from CIFAR-10 (downloading it through torchvision
    if needed), write it atomically with its sha256 beside it, and return its path."""
    target = cifar4_path(root)
    raw = target.parent / "raw"
    try:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(raw), train=True, download=download)  # verifies the archive's md5
        CIFAR10(str(raw), train=False, download=download)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise DatasetError(
            f"Could not get CIFAR-10 ({type(error).__name__}: {error}). Without a network, "
            f"copy the official cifar-10-python.tar.gz ({CIFAR10_URL}) into {raw} , or pass "
            "the path of an existing dataset-full.npz, or use dataset='synthetic' to work "
            "offline."
        ) from error
    data = _npz_bytes(cifar4_from_archive(raw))
    atomic_write_bytes(target, data)
    atomic_write_bytes(target.with_suffix(".sha256"),
                       hashlib.sha256(data).hexdigest().encode())
    return target


def _cached_cifar4(root: str | os.PathLike[str] | None) -> CourseData | None:
    target = cifar4_path(root)
    checksum = target.with_suffix(".sha256")
    if not (target.is_file() and checksum.is_file()):
        return None
    return load_npz(target, expected_sha256=checksum.read_text().strip())


def load_cifar4(root: str | os.PathLike[str] | None = None, *,
                download: bool = True) -> CourseData:
    """The cifar4 dataset from the verified cache, building it (and downloading) if needed.

    A cache whose checksum fails is rebuilt from the raw archive."""
    try:
        cached = _cached_cifar4(root)
    except DatasetError as error:
        warnings.warn(f"{error} Rebuilding it.", stacklevel=2)
        cached = None
    if cached is not None:
        return _named(cached, "cifar4")
    path = build_cifar4(root, download=download)
    return _named(_cached_cifar4(root) or load_npz(path), "cifar4")


def _named(data: CourseData, name: str) -> CourseData:
    return CourseData(data.x_train, data.y_train, data.x_test, data.y_test, data.classes, name)


def _archive_available(root: str | os.PathLike[str] | None) -> bool:
    raw = cifar4_path(root).parent / "raw"
    return (raw / "cifar-10-batches-py").is_dir() or (raw / "cifar-10-python.tar.gz").is_file()


def _online(host: str = "www.cs.toronto.edu", timeout: float = 3.0) -> bool:
    """Whether CIFAR-10's server answers quickly (so "auto" never hangs offline)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Entry point


@lru_cache(maxsize=2)
def _synthetic(seed: int) -> CourseData:
    arrays = synthetic_dataset(seed=seed)
    x_train, y_train, x_test, y_test = _to_tensors(arrays, "synthetic")
    return CourseData(x_train, y_train, x_test, y_test, SYNTHETIC_CLASSES, "synthetic")


def load_course_data(dataset: str | os.PathLike[str] = "auto", *,
                     root: str | os.PathLike[str] | None = None, seed: int = 0,
                     download: bool = True) -> CourseData:
    """Load the course dataset.

    Args:
        dataset: ``"cifar4"``, ``"synthetic"``, ``"auto"`` or a path to a dataset-full.npz.
        root: cache folder for cifar4 (default :func:`cache_dir`).
        seed: the synthetic dataset's seed.
        download: allow downloading CIFAR-10 when it is not cached.

    Returns a :class:`CourseData` (float32 NCHW images in [0, 1], int64 labels).
    """
    name = os.fspath(dataset)
    if name == "synthetic":
        return _synthetic(seed)
    if name == "cifar4":
        return load_cifar4(root, download=download)
    if name == "auto":
        if cifar4_path(root).is_file() or _archive_available(root):
            return load_cifar4(root, download=False)
        if download and _online():
            try:
                return load_cifar4(root, download=True)
            except DatasetError as error:
                print(f"[labsupport] CIFAR-10 is not available ({str(error).split('.')[0]}); "
                      "using the embedded synthetic dataset instead.")
        return _synthetic(seed)
    if name.endswith(".npz") or os.sep in name or Path(name).exists():
        return load_npz(name)
    raise DatasetError(f"Unknown dataset {name!r}: use 'auto', 'cifar4', 'synthetic', or the "
                       "path to a dataset-full.npz file.")


def check_images(x: torch.Tensor, what: str = "x") -> None:
    """Raise a clear ValueError unless ``x`` is a float (N, 3, H, W) batch in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor; got {type(x).__name__}.")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must be shaped (N, 3, H, W); got {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be float in [0, 1]; got {x.dtype} (use x.float() / 255).")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{what} must lie in [0, 1]; got [{x.min():.3g}, {x.max():.3g}].")
