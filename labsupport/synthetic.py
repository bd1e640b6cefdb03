"""The embedded offline dataset: procedurally generated 32x32 RGB images of four classes.

Each image is a shape (the class: disk, square, triangle or cross) on a smooth random
background, with sensor noise. The generator is tuned to be about as hard as real CIFAR-10
images of four classes are for the course CNN at the ``cpu`` budget (clean accuracy around
0.8, not 1.0), in the ways the labs depend on:

- *Intra-class variety*: the shape's size (3.5 to 10.5 pixels), position, rotation (up to
  27 degrees) and contrast (0.04 to 0.45, so some objects are barely visible) vary, and a
  small *distractor* shape of a random class sits somewhere in the image (clutter).
- *A weak, robust, class-correlated cue*: the background colour leans towards a class
  colour, as skies go with airplanes; it is what a robust model can still use when the
  shape is hard to see.
- *A non-robust feature* (Ilyas et al., 2019): a faint high-frequency stripe texture whose
  orientation follows the class in 60% of the images (random otherwise). A standard model
  uses it; an eps = 8/255 attack flips it; adversarial training must do without it, so it
  costs clean accuracy.

So the offline dataset shows every phenomenon the course teaches, with its costs: PGD
breaks standard models, adversarial training buys robustness for some clean accuracy,
larger smoothing noise costs accuracy, and a backdoor needs a real training budget to be
learned (``tests/test_synthetic_science.py`` pins these properties).

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
#: Probability that the texture's orientation is the class's (otherwise a random class's).
_TEXTURE_AGREEMENT = 0.6
_NOISE_STD = 0.03
CONTRAST = (0.04, 0.45)
SIZE = (3.5, 10.5)
CENTRE = (6.0, 26.0)
#: Largest rotation of the class shape, as a fraction of pi.
ROTATION = 0.15
BG = 0.25
#: Strength of the class-correlated shift of the background colour, and its direction
#: (RGB, unit length) per class.
CLASS_COLOUR = 0.12
_CLASS_TINTS = np.array([[1, -1, 0], [-1, 0, 1], [0, 1, -1], [1, 1, 1]], np.float32)
_CLASS_TINTS /= np.linalg.norm(_CLASS_TINTS, axis=1, keepdims=True)
DISTRACTOR_SIZE = (3.0, 6.0)
DISTRACTOR_CONTRAST = (0.1, 0.4)


def _shape_masks(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: np.ndarray,
                 angle: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean (N, H, W) masks of each sample's class shape, rotated by ``angle`` (radians)."""
    dx0 = xx[None] - cx[:, None, None]
    dy0 = yy[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx = cos * dx0 + sin * dy0
    dy = cos * dy0 - sin * dx0
    s = size[:, None, None]
    masks = np.zeros(dx.shape, dtype=bool)
    for label in range(len(SYNTHETIC_CLASSES)):
        rows = labels == label
        if not rows.any():
            continue
        x, y, r = dx[rows], dy[rows], s[rows]
        if label == 0:  # disk
            masks[rows] = x**2 + y**2 <= r**2
        elif label == 1:  # square
            masks[rows] = np.maximum(np.abs(x), np.abs(y)) <= 0.8 * r
        elif label == 2:  # triangle
            half = 0.9 * r
            masks[rows] = (y >= -half) & (y <= half) & (np.abs(x) <= (y + half) * 0.55)
        else:  # cross
            arm = 0.32 * r
            masks[rows] = (((np.abs(x) <= arm) & (np.abs(y) <= r))
                           | ((np.abs(y) <= arm) & (np.abs(x) <= r)))
    return masks


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

    # Background: a base colour leaning towards the class colour, plus a smooth random field.
    base = rng.uniform(0.25, 0.75, size=(n, 3, 1, 1)).astype(np.float32)
    base = np.clip(base + CLASS_COLOUR * _CLASS_TINTS[labels][:, :, None, None], 0.1, 0.9)
    images = base + BG * (_smooth_field(rng, n, 3, 4) - 0.5)

    # Clutter: a small distractor shape of a random class, anywhere, lighter or darker.
    kind = rng.integers(0, len(SYNTHETIC_CLASSES), size=n)
    size = rng.uniform(*DISTRACTOR_SIZE, size=n).astype(np.float32)
    cx, cy = rng.uniform(0, IMAGE_SIZE, size=(2, n)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
    mask = _shape_masks(kind, cx, cy, size, angle, yy, xx)[:, None]
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n, 1, 1, 1))
    contrast = rng.uniform(*DISTRACTOR_CONTRAST, size=(n, 1, 1, 1)).astype(np.float32)
    tint = rng.uniform(-0.15, 0.15, size=(n, 3, 1, 1)).astype(np.float32)
    images = np.where(mask, np.clip(base + sign * contrast + tint, 0.0, 1.0), images)

    # The class shape, in a colour that differs from the background by a random contrast.
    size = rng.uniform(*SIZE, size=n).astype(np.float32)
    cx, cy = rng.uniform(*CENTRE, size=(2, n)).astype(np.float32)
    angle = (rng.uniform(-ROTATION, ROTATION, size=n) * np.pi).astype(np.float32)
    mask = _shape_masks(labels, cx, cy, size, angle, yy, xx)[:, None]
    sign = np.where(base.mean(axis=1, keepdims=True) > 0.5, -1.0, 1.0).astype(np.float32)
    tint = rng.uniform(-0.1, 0.1, size=(n, 3, 1, 1)).astype(np.float32)
    contrast = rng.uniform(CONTRAST[0], CONTRAST[1], size=(n, 1, 1, 1)).astype(np.float32)
    colour = np.clip(base + sign * contrast + tint, 0.0, 1.0)
    images = np.where(mask, colour, images)

    # Faint texture whose orientation usually follows the class (the non-robust feature).
    agrees = rng.random(n) < _TEXTURE_AGREEMENT
    oriented = np.where(agrees, labels, rng.integers(0, len(SYNTHETIC_CLASSES), size=n))
    angle = _TEXTURE_ANGLES[oriented][:, None, None].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    along = xx[None] * np.cos(angle) + yy[None] * np.sin(angle)
    texture = _TEXTURE_AMPLITUDE * np.sin(2 * np.pi * along / _TEXTURE_PERIOD + phase)
    images = images + texture[:, None]

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
