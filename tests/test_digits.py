"""labsupport.digits: the offline stand-in, digits npz files, and the MNIST download path,
tested offline against small files this test writes in MNIST's official format (gzip'd IDX);
the DigitsCNN and the digits asset recipes."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from labsupport import assets
from labsupport import digits as digits_module
from labsupport.data import DatasetError
from labsupport.digits import DIGIT_CLASSES, MNIST_FILES, load_digits, mnist_path
from labsupport.models import DigitsCNN, build_model, load_model, save_model

# ---------------------------------------------------------------------- the stand-in


def test_stand_in_shapes_range_split_and_determinism():
    data = load_digits("digits")
    assert data.name == "digits" and data.classes == DIGIT_CLASSES and data.num_classes == 10
    assert data.x_train.shape == (1347, 1, 28, 28) and data.x_test.shape == (450, 1, 28, 28)
    for x in (data.x_train, data.x_test):
        assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
        # MNIST-like layout: the digit in the central 20x20 box, a blank 4-pixel border.
        assert x[:, :, :4].abs().sum() == 0 and x[:, :, :, -4:].abs().sum() == 0
    # Stratified: every class in both splits, about a quarter of each held out.
    assert torch.bincount(data.y_test, minlength=10).min() >= 43
    assert torch.bincount(data.y_train, minlength=10).min() >= 129
    again = load_digits("digits")
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    again.x_train.zero_()  # fresh tensors: changing one load leaves the next intact
    assert load_digits("digits").x_train.max() == 1
    assert len(digits_module.stand_in_sha256()) == 64


def test_stand_in_is_the_sklearn_digits_resized():
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    data = load_digits("digits")
    # Average-pooling the 20x20 box back to 8x8 (2.5 pixels a cell) approximates the original.
    first = torch.cat([data.x_train, data.x_test])
    labels = torch.cat([data.y_train, data.y_test])
    assert sorted(labels.tolist()) == sorted(bunch.target.tolist())
    box = torch.nn.functional.adaptive_avg_pool2d(first[:, :, 4:24, 4:24], 8)[:, 0]
    originals = torch.from_numpy(bunch.images / 16).float()
    # Each resized image is closest to an original of its own label.
    distance = torch.cdist(box[:50].flatten(1), originals.flatten(1))
    nearest = distance.argmin(1)
    assert (torch.from_numpy(bunch.target)[nearest] == labels[:50]).float().mean() > 0.95


# ---------------------------------------------------------------------- npz files


def test_npz_path_loads_uint8_and_float(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "y_train": np.arange(6), "x_test": rng.random((3, 1, 28, 28)).astype(np.float32),
              "y_test": np.array([9, 0, 1])}
    path = tmp_path / "digits-full.npz"
    np.savez(path, **arrays)
    data = load_digits(path)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (3, 1, 28, 28)
    assert torch.allclose(data.x_train[:, 0], torch.from_numpy(arrays["x_train"]) / 255)
    assert data.y_test.tolist() == [9, 0, 1]


@pytest.mark.parametrize("case, message", [
    ({"x_train": np.zeros((2, 28, 28), np.uint8)}, "lacks the arrays"),
    ({"x_train": np.zeros((2, 32, 32, 3), np.uint8)}, "(N, 28, 28)"),
    ({"x_train": np.full((2, 1, 28, 28), 2.0, np.float32)}, "must lie in [0, 1]"),
    ({"y_train": np.array([0, 10])}, "0..9"),
    ({"y_train": np.array([0.0, 1.0])}, "integer labels"),
])
def test_malformed_digits_files_are_clear_errors(tmp_path, case, message):
    arrays = {"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.array([0, 1]),
              "x_test": np.zeros((1, 28, 28), np.uint8), "y_test": np.array([2])}
    arrays.update(case)
    if message == "lacks the arrays":
        del arrays["y_test"]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        load_digits(path)


def test_unknown_names_and_course_names_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="Unknown digits dataset"):
        load_digits("fashion")
    with pytest.raises(DatasetError, match="'digits'"):
        load_digits("synthetic")
    with pytest.raises(DatasetError, match="No digits dataset file"):
        load_digits(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="name or a path"):
        load_digits(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- MNIST, offline


def _idx(array: np.ndarray) -> bytes:
    """An array in the IDX format (http://yann.lecun.com/exdb/mnist/): magic 0x0000 08 <ndim>
    (unsigned bytes), the dimensions as big-endian int32, then the data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture()
def fake_mnist(tmp_path, monkeypatch):
    """Small MNIST files (official names and format, gzip'd) and torchvision told their md5."""
    from torchvision.datasets import MNIST

    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(12) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
              "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5])}
    source = tmp_path / "official"
    source.mkdir()
    resources = []
    for name, array in arrays.items():
        path = source / f"{name}.gz"
        path.write_bytes(gzip.compress(_idx(array), mtime=0))
        resources.append((path.name, hashlib.md5(path.read_bytes()).hexdigest()))
    monkeypatch.setattr(MNIST, "resources", resources)
    return source, arrays


@pytest.fixture()
def offline(monkeypatch):
    """No network: every URL open fails as it does without one."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(digits_module, "_online", lambda *a, **k: False)


def _check_mnist(data, arrays):
    assert data.name == "mnist" and data.classes == DIGIT_CLASSES
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (5, 1, 28, 28)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32)) / 255
    assert torch.allclose(data.x_train[:, 0], expected)
    assert data.y_test.tolist() == [3, 1, 4, 1, 5]


def test_mnist_downloads_through_torchvision(tmp_path, fake_mnist, monkeypatch):
    """The download path, with the network replaced by copies of the official-format files."""
    from torchvision.datasets import utils as tv_utils

    source, arrays = fake_mnist
    fetched = []

    def fake_urlretrieve(url, filename, chunk_size=None):
        fetched.append(url.rsplit("/", 1)[1])
        shutil.copy(source / url.rsplit("/", 1)[1], filename)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", fake_urlretrieve)
    root = tmp_path / "root"
    data = load_digits("mnist", root=root)
    assert sorted(fetched) == sorted(MNIST_FILES)
    _check_mnist(data, arrays)
    assert mnist_path(root).is_file() and mnist_path(root).with_suffix(".sha256").is_file()
    # Cached now: no second download, and "auto" uses the cache.
    assert torch.equal(load_digits("mnist", root=root).x_train, data.x_train)
    assert torch.equal(load_digits("auto", root=root).x_test, data.x_test)
    assert len(fetched) == 4


def test_mnist_builds_offline_from_copied_files(tmp_path, fake_mnist, offline):
    source, arrays = fake_mnist
    root = tmp_path / "root"
    raw = root / "mnist" / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(source / name, raw / name)
    _check_mnist(load_digits("mnist", root=root, download=False), arrays)


def test_offline_mnist_is_a_clear_error(tmp_path, offline):
    with pytest.raises(DatasetError, match="Could not download or read MNIST") as info:
        load_digits("mnist", root=tmp_path)
    message = str(info.value)
    assert "copy them into" in message and "dataset='digits'" in message


def test_corrupt_mnist_cache_is_rebuilt(tmp_path, fake_mnist, offline, capsys):
    source, arrays = fake_mnist
    root = tmp_path / "root"
    raw = root / "mnist" / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(source / name, raw / name)
    load_digits("mnist", root=root)
    path = mnist_path(root)
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    _check_mnist(load_digits("mnist", root=root), arrays)
    assert "corrupt or unverified; rebuilding" in capsys.readouterr().out
    assert digits_module.read_verified_npz(path) is not None


def test_auto_falls_back_to_the_stand_in_with_one_notice(tmp_path, offline, capsys):
    data = load_digits("auto", root=tmp_path)
    assert data.name == "digits"
    out = capsys.readouterr()
    assert out.out.count("[labsupport]") == 1 and "stand-in" in out.out and out.err == ""


def test_auto_never_probes_the_network_under_the_autograder(tmp_path, monkeypatch, capsys):
    def no_probe(*args, **kwargs):
        raise AssertionError("probed the network under the autograder")

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setattr(digits_module, "_online", no_probe)
    assert load_digits("auto", root=tmp_path).name == "digits"


# ---------------------------------------------------------------------- model and assets


def test_digits_cnn_shapes_checks_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("DigitsCNN").eval()
    assert isinstance(model, DigitsCNN) and model.last_conv is model.conv2
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model(torch.rand(3, 3, 32, 32))
    with pytest.raises(ValueError, match="float"):
        model((x * 255).to(torch.uint8))
    save_model(model, tmp_path / "m.pt", dataset="digits", seed=0)
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta["architecture"] == "DigitsCNN"
    assert torch.allclose(loaded(x), model(x))


def test_digits_recipes_know_their_dataset_family(tmp_cache):
    recipe = assets.get_recipe("lab6-digits-cnn")
    assert recipe.data == "digits" and recipe.architecture == "DigitsCNN"
    assert assets.get_recipe("lab6-course-cnn").data == "course"
    # A course dataset name stands for its digits counterpart.
    path = assets.asset_path("lab6-digits-cnn", dataset="synthetic", profile="smoke")
    assert path.parts[-3:] == ("digits", "smoke", "lab6-digits-cnn.pt")
    assert assets.asset_path("lab6-digits-cnn", dataset="cifar4",
                             profile="cpu").parts[-3] == "mnist"
    assert assets.asset_path("lab6-course-cnn", dataset="synthetic",
                             profile="cpu").parts[-3] == "synthetic"


@pytest.mark.slow
def test_smoke_digits_asset_builds_and_classifies(tmp_cache, quiet):
    model = assets.load_asset("lab6-digits-cnn", dataset="digits", profile="smoke",
                              device="cpu")
    assert isinstance(model, DigitsCNN)
    assert model.asset_meta["dataset_key"] == "digits"
    assert model.asset_meta["test_accuracy"] > 0.5  # chance is 0.1
