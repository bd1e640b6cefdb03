"""The course dataset: CIFAR-10's {airplane, automobile, ship, truck}, or its offline stand-in.

``load_course_data(dataset)`` accepts

- ``"cifar4"``: the CIFAR-10 subset, built once from the official archive (downloaded through
  torchvision when online) into a checksummed ``dataset-full.npz`` cache;
- a path to a ``dataset-full.npz`` (arrays ``x_train, y_train, x_test, y_test``; images uint8
  NHWC or float NCHW in [0, 1]);
- ``"synthetic"``: the embedded, procedurally generated dataset (:mod:`labsupport.synthetic`),
  generated once and cached as a sha256-verified npz under :func:`cache_dir` (a warm load
  takes well under a second; a corrupt or stale cache is regenerated);
- ``"auto"``: ``cifar4`` when cached or downloadable, else ``synthetic`` (with one notice).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from . import synthetic
from .models import atomic_write_bytes
from .paths import CACHE_ENV, cache_dir, sha256_file  # noqa: F401 (part of this module's API)
from .runtime import under_autograder

CIFAR4_CLASSES = ("airplane", "automobile", "ship", "truck")
#: Indices of the four classes among CIFAR-10's ten labels.
CIFAR10_INDICES = (0, 1, 8, 9)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
KEYS = ("x_train", "y_train", "x_test", "y_test")
DATASETS = ("auto", "cifar4", "synthetic")
SYNTHETIC_CLASSES = synthetic.SYNTHETIC_CLASSES


class DatasetError(RuntimeError):
    """The course dataset is missing, corrupt or malformed; the message says what to do."""


@dataclass(frozen=True, eq=False)
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
        """How many classes there are."""
        return len(self.classes)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> CourseData:
        """The first ``n_train`` training and ``n_test`` test images (the data is shuffled)."""
        return CourseData(self.x_train[:n_train], self.y_train[:n_train],
                          self.x_test[:n_test], self.y_test[:n_test], self.classes, self.name)

    def __repr__(self) -> str:
        return (f"CourseData({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} "
                f"test images, classes {self.classes})")


# --------------------------------------------------------------------------------------
# Validation and conversion

IMAGE_SHAPE = (3, 32, 32)  # channels, height, width of every course image


def _to_tensors(arrays: dict[str, np.ndarray], source: str) -> tuple[torch.Tensor, ...]:
    """Validate the seed layout and convert it to ``x_train, y_train, x_test, y_test``."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DatasetError(
            f"{source} lacks the arrays {missing}; a course dataset file holds "
            f"{', '.join(KEYS)}. Rebuild it with load_course_data('cifar4') or check the path."
        )
    out: list[torch.Tensor] = []
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        images = _images_to_tensor(x, f"{source}: x_{split}")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{source}: y_{split} must hold one label per image "
                               f"({len(x)}); got shape {y.shape}.")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{source}: y_{split} must hold integer labels; got {y.dtype}. "
                               "Store class indices (0, 1, ...), not one-hot or float labels.")
        out.extend([images, torch.from_numpy(y.astype(np.int64))])
    return tuple(out)


def _images_to_tensor(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 NHWC (N, 32, 32, 3) or float NCHW (N, 3, 32, 32) in [0, 1] -> float32 NCHW."""
    layouts = "(N, 32, 32, 3) uint8 or (N, 3, 32, 32) float in [0, 1]"
    if x.ndim != 4:
        raise DatasetError(f"{what} must be a 4-d image array {layouts}; got shape {x.shape}.")
    if x.dtype == np.uint8:
        if x.shape[1:] != (32, 32, 3):
            hint = " (it looks NCHW: transpose it to NHWC)" if x.shape[1:] == IMAGE_SHAPE else ""
            raise DatasetError(f"{what}: uint8 images must be NHWC (N, 32, 32, 3); got shape "
                               f"{x.shape}{hint}.")
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255)
    if np.issubdtype(x.dtype, np.floating):
        if x.shape[1:] != IMAGE_SHAPE:
            hint = " (it looks NHWC: transpose it to NCHW)" if x.shape[1:] == (32, 32, 3) else ""
            raise DatasetError(f"{what}: float images must be NCHW (N, 3, 32, 32); got shape "
                               f"{x.shape}{hint}.")
        if x.size and not np.isfinite(x).all():
            raise DatasetError(f"{what}: float images hold NaN or infinite values.")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DatasetError(f"{what}: float images must lie in [0, 1]; got values in "
                               f"[{x.min():.3g}, {x.max():.3g}]. Divide uint8 pixels by 255.")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    raise DatasetError(f"{what}: images must be {layouts}; got dtype {x.dtype}.")


def _read_npz(path: Path, data: bytes | None = None) -> dict[str, np.ndarray]:
    """The arrays of an npz file (or of its bytes, when already read)."""
    try:
        source = io.BytesIO(data) if data is not None else path
        with np.load(source, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except Exception as error:  # truncated zip, bad CRC, not a zip at all, pickled objects
        raise DatasetError(
            f"{path} is not a readable .npz file ({type(error).__name__}: {error}); it may be "
            "truncated or corrupt. Delete it and build it again (load_course_data('cifar4') "
            "online), or point to a good copy."
        ) from error


def load_npz(path: str | os.PathLike[str], *, classes: tuple[str, ...] = CIFAR4_CLASSES,
             expected_sha256: str | None = None) -> CourseData:
    """Load and validate a ``dataset-full.npz`` (optionally checking its sha256).

    Raises :class:`DatasetError` saying what is wrong for a missing, corrupt, truncated or
    malformed file (missing arrays, wrong shape, dtype or range, labels out of range).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"No dataset file at {path}. Give the path to a dataset-full.npz, "
                           "or use dataset='synthetic' to work offline.")
    data = path.read_bytes()
    if expected_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected_sha256:
            raise DatasetError(f"{path}: sha256 {digest[:12]}… does not match the recorded "
                               f"{expected_sha256[:12]}…; the cache is corrupt. Delete it and "
                               "build it again.")
    x_train, y_train, x_test, y_test = _to_tensors(_read_npz(path, data), str(path))
    labels = torch.cat([y_train, y_test])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{path}: labels must lie in 0..{len(classes) - 1} "
                           f"({', '.join(classes)}); got {labels.min()}..{labels.max()}.")
    return CourseData(x_train, y_train, x_test, y_test, tuple(classes), str(path))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_verified_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` to ``path`` atomically, with its sha256 in a ``.sha256`` file beside
    it; return the digest."""
    path = Path(path)
    data = _npz_bytes(arrays)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".sha256"), digest.encode())
    return digest


def read_verified_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an npz written by :func:`write_verified_npz`; ``None`` when the file or
    its checksum is missing, or the file does not match its checksum or cannot be read."""
    path = Path(path)
    try:
        expected = path.with_suffix(".sha256").read_text().strip()
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        return None
    try:
        return _read_npz(path, data)
    except DatasetError:
        return None


# --------------------------------------------------------------------------------------
# CIFAR-10 → cifar4


def _cifar4_subset(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep CIFAR-10's airplane, automobile, ship and truck, relabelled 0..3 (NHWC uint8)."""
    labels = np.asarray(labels, dtype=np.int64)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(CIFAR10_INDICES)] = np.arange(len(CIFAR10_INDICES))
    keep = remap[labels] >= 0
    return np.ascontiguousarray(images[keep], dtype=np.uint8), remap[labels[keep]]


def cifar4_from_archive(root: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The four-class subset, in the seed layout (uint8 NHWC, labels 0..3), read directly
    from an extracted official CIFAR-10 python archive under ``root`` (the folder holding
    ``cifar-10-batches-py``), without torchvision's md5 checks."""
    batches = Path(root) / "cifar-10-batches-py"
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out: dict[str, np.ndarray] = {}
    for split, names in splits.items():
        xs, ys = [], []
        for name in names:
            try:
                with open(batches / name, "rb") as handle:
                    batch = pickle.load(handle, encoding="latin1")
                xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch["labels"], dtype=np.int64))
            except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
                raise DatasetError(f"{batches / name} is not a CIFAR-10 python batch "
                                   f"({type(error).__name__}: {error}).") from error
        x = np.concatenate(xs).transpose(0, 2, 3, 1)
        out[f"x_{split}"], out[f"y_{split}"] = _cifar4_subset(x, np.concatenate(ys))
    return out


def cifar4_path(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the cifar4 ``dataset-full.npz`` cache lives (its sha256 beside it)."""
    return Path(root or cache_dir()).expanduser() / "cifar4" / "dataset-full.npz"


def _raw_dir(root: str | os.PathLike[str] | None) -> Path:
    return cifar4_path(root).parent / "raw"


def _offline_help(raw: Path) -> str:
    return (f"Without a network, download the official cifar-10-python.tar.gz ({CIFAR10_URL}) "
            f"elsewhere and copy it into {raw}/ , or pass the path of an existing "
            "dataset-full.npz as the dataset, or use dataset='synthetic' to work offline.")


def build_cifar4(root: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Build the cached ``dataset-full.npz`` from CIFAR-10 and return its path.

    CIFAR-10 is read through torchvision (which verifies the md5 of the archive and of
    every batch), downloading it into ``<root>/cifar4/raw`` when ``download`` is true. An
    official ``cifar-10-python.tar.gz`` already copied there is used without the network.
    The file is written atomically with its sha256 beside it.
    """
    target = cifar4_path(root)
    raw = _raw_dir(root)
    try:
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import check_integrity

        raw.mkdir(parents=True, exist_ok=True)
        # An archive copied in by hand is extracted (and verified) by the download code
        # path, which only touches the network when the archive is missing or corrupt.
        have_archive = check_integrity(str(raw / CIFAR10.filename), CIFAR10.tgz_md5)
        fetch = download or have_archive
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints its progress
            train = CIFAR10(str(raw), train=True, download=fetch)
            test = CIFAR10(str(raw), train=False, download=False)
    except Exception as error:  # URLError is an OSError; bad archives raise RuntimeError
        what = "download or read" if download else "read (download=False)"
        raise DatasetError(
            f"Could not {what} CIFAR-10 in {raw} ({type(error).__name__}: {error}). "
            + _offline_help(raw)
        ) from error
    arrays: dict[str, np.ndarray] = {}
    for split, ds in (("train", train), ("test", test)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _cifar4_subset(ds.data, ds.targets)
    write_verified_npz(target, arrays)
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

    A cache that is unreadable or fails its checksum is rebuilt (with a notice)."""
    try:
        cached = _cached_cifar4(root)
    except DatasetError as error:
        _notice(f"{error} Rebuilding it.")
        cached = None
    if cached is None:
        build_cifar4(root, download=download)
        cached = _cached_cifar4(root)
        if cached is None:  # pragma: no cover - build_cifar4 always writes both files
            raise DatasetError(f"Building {cifar4_path(root)} left no verified cache.")
    return _named(cached, "cifar4")


def _named(data: CourseData, name: str) -> CourseData:
    return CourseData(data.x_train, data.y_train, data.x_test, data.y_test, data.classes, name)


def _notice(message: str) -> None:
    """Tell the user something once, on stdout (test cells must keep stderr empty)."""
    print(f"[labsupport] {message}")


def _archive_available(root: str | os.PathLike[str] | None) -> bool:
    raw = _raw_dir(root)
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
# The synthetic dataset, cached


def synthetic_fingerprint() -> str:
    """A short hash of the synthetic generator's source (and NumPy's version): it changes
    whenever the generated images may change."""
    source = Path(synthetic.__file__).read_bytes()
    return hashlib.sha256(source + np.__version__.encode()).hexdigest()[:12]


def synthetic_cache_path(seed: int = 0) -> Path:
    """Where the generated synthetic dataset for ``seed`` is cached. The name carries
    :func:`synthetic_fingerprint`, so editing the generator invalidates it."""
    return cache_dir() / "synthetic" / f"synthetic-seed{seed}-{synthetic_fingerprint()}.npz"


@lru_cache(maxsize=2)
def _synthetic_arrays(seed: int) -> dict[str, np.ndarray]:
    """The synthetic dataset in the seed layout, from the verified cache when possible
    (regenerated, and the cache rewritten, when it is missing, stale or corrupt)."""
    path = synthetic_cache_path(seed)
    arrays = read_verified_npz(path)
    if arrays is not None and all(k in arrays for k in KEYS):
        return arrays
    arrays = synthetic.synthetic_dataset(seed=seed)
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        write_verified_npz(path, arrays)
    return arrays


def load_synthetic(seed: int = 0) -> CourseData:
    """The embedded synthetic dataset (generated once, then cached under :func:`cache_dir`).

    Every call returns fresh tensors, so changing them in place (poisoning, say) does not
    leak into the next call."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"The synthetic dataset's seed must be a non-negative integer; "
                           f"got {seed!r}.")
    tensors = _to_tensors(_synthetic_arrays(int(seed)), "synthetic")
    return CourseData(*tensors, classes=synthetic.SYNTHETIC_CLASSES, name="synthetic")


# --------------------------------------------------------------------------------------
# Entry point


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
    Raises :class:`DatasetError` with what to do when the dataset cannot be had.
    """
    if not isinstance(dataset, (str, os.PathLike)):
        raise DatasetError(f"dataset must be a name or a path; got {type(dataset).__name__}. "
                           "Use 'auto', 'cifar4', 'synthetic' or a path to a dataset-full.npz.")
    name = os.fspath(dataset)
    key = name.strip().lower()
    if key == "synthetic":
        return load_synthetic(seed)
    if key == "cifar4":
        return load_cifar4(root, download=download)
    if key == "auto":
        usable = cifar4_path(root).is_file() or _archive_available(root)
        # The autograder never downloads (nor waits for a network probe): a submission grades
        # on the cached cifar4 when the instructor has one, else on the synthetic dataset.
        if usable or (download and not under_autograder() and _online()):
            try:
                return load_cifar4(root, download=download)
            except DatasetError as error:
                reason = str(error).split(". ")[0]
                _notice(f"CIFAR-10 is not available ({reason}); using the embedded synthetic "
                        "dataset instead.")
        else:
            _notice("CIFAR-10 is neither cached nor downloadable (offline); using the "
                    "embedded synthetic dataset.")
        return load_synthetic(seed)
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
