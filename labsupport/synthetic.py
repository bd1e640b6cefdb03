"""The embedded offline dataset: procedurally generated 32x32 RGB images of four classes.

Each image is a shape (the class: disk, square, triangle or cross) of random position,
size and colour on a smooth random background, with sensor noise. Like natural images it
also carries a faint, class-correlated high-frequency texture (stripes whose orientation
follows the class): a *non-robust feature* (Ilyas et al., 2019) that a standard model
happily uses and an eps = 8/255 attack easily flips, while the shape is a robust feature
that adversarial training learns to rely on. So the offline dataset shows every
phenomenon the course teaches: high clean accuracy, PGD breaking standard models,
adversarial training buying robustness, noise-trained models certifying, and backdoors
being learned from a few poisoned images.

Generation is deterministic in ``seed`` and takes a few seconds for 24,000 images;
:func:`labsupport.data.load_course_data` caches the result.
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_CLASSES = ("disk", "square", "triangle", "cross")
IMAGE_SIZE = 32

# Orientations of the class-correlated texture, one per class (radians).
_TEXTURE_ANGLES = np.array([0.0, 0.25, 0.5, 0.75]) * np.pi
_TEXTURE_PERIOD = 4.0  # pixels
_TEXTURE_AMPLITUDE = 0.05
_NOISE_STD = 0.03
CONTRAST = (0.3, 0.45)
SIZE = (7.0, 10.5)
BG = 0.25


def _shape_masks(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: np.ndarray,
                 yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean (N, H, W) masks of each sample's class shape."""
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    s = size[:, None, None]
    disk = dx**2 + dy**2 <= s**2
    square = np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * s
    half = 0.9 * s
    triangle = (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) * 0.55)
    arm = 0.32 * s
    cross = ((np.abs(dx) <= arm) & (np.abs(dy) <= s)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= s))
    masks = np.stack([disk, square, triangle, cross], axis=1)  # (N, 4, H, W)
    return masks[np.arange(len(labels)), labels]


def _upsample_matrix(coarse: int) -> np.ndarray:
    """(32, coarse) matrix of bilinear interpolation weights from a coarse grid to 32 pixels."""
    positions = np.linspace(0, coarse - 1, IMAGE_SIZE)
    lo = np.floor(positions).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    w = positions - lo
    matrix = np.zeros((IMAGE_SIZE, coarse))
    matrix[np.arange(IMAGE_SIZE), lo] += 1 - w
    matrix[np.arange(IMAGE_SIZE), hi] += w
    return matrix.astype(np.float32)


def _smooth_field(rng: np.random.Generator, n: int, channels: int, coarse: int) -> np.ndarray:
    """Random low-frequency field (N, C, 32, 32) in [0, 1]: coarse uniform noise, bilinearly
    upsampled."""
    grid = rng.random((n, channels, coarse, coarse), dtype=np.float32)
    up = _upsample_matrix(coarse)
    return up @ grid @ up.T


#: Images are rendered in chunks of this many, so temporaries stay small (fast).
_CHUNK = 2048


def generate(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each class as uint8 NHWC, and int64 labels, class-balanced
    and shuffled. Deterministic in ``seed``."""
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be non-negative; got {n_per_class}.")
    rng = np.random.default_rng(seed)
    n = n_per_class * len(SYNTHETIC_CLASSES)
    labels = rng.permutation(np.repeat(np.arange(len(SYNTHETIC_CLASSES)), n_per_class))
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        out[start : start + _CHUNK] = _render(rng, labels[start : start + _CHUNK])
    return out, labels.astype(np.int64)


def _render(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Images (uint8 NHWC) of the given classes, drawing every random choice from ``rng``."""
    n = len(labels)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)

    # Background: a base colour plus a smooth random field.
    base = rng.uniform(0.25, 0.75, size=(n, 3, 1, 1)).astype(np.float32)
    background = base + BG * (_smooth_field(rng, n, 3, 4) - 0.5)

    # The class shape, in a colour that differs from the background by a random contrast.
    size = rng.uniform(SIZE[0], SIZE[1], size=n).astype(np.float32)
    cx = rng.uniform(10, 22, size=n).astype(np.float32)
    cy = rng.uniform(10, 22, size=n).astype(np.float32)
    mask = _shape_masks(labels, cx, cy, size, yy, xx)[:, None]
    sign = np.where(base.mean(axis=1, keepdims=True) > 0.5, -1.0, 1.0).astype(np.float32)
    tint = rng.uniform(-0.1, 0.1, size=(n, 3, 1, 1)).astype(np.float32)
    contrast = rng.uniform(CONTRAST[0], CONTRAST[1], size=(n, 1, 1, 1)).astype(np.float32)
    colour = np.clip(base + sign * contrast + tint, 0.0, 1.0)
    images = np.where(mask, colour, background)

    # Faint class-correlated texture (the non-robust feature), random phase.
    angle = _TEXTURE_ANGLES[labels][:, None, None].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    along = xx[None] * np.cos(angle) + yy[None] * np.sin(angle)
    texture = _TEXTURE_AMPLITUDE * np.sin(2 * np.pi * along / _TEXTURE_PERIOD + phase)
    images += texture[:, None]

    images += _NOISE_STD * rng.standard_normal(size=images.shape, dtype=np.float32)
    np.clip(images, 0, 1, out=images)
    images *= 255
    return np.rint(images).astype(np.uint8).transpose(0, 2, 3, 1)


def synthetic_dataset(
    n_train_per_class: int = 5000, n_test_per_class: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """The offline course dataset in the seed layout (uint8 NHWC images, int64 labels)."""
    x_train, y_train = generate(n_train_per_class, seed=seed * 2 + 1)
    x_test, y_test = generate(n_test_per_class, seed=seed * 2 + 2)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
