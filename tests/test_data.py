"""labsupport.data: the synthetic dataset and its cache, dataset files and their validation,
and the cifar4 build path, tested offline against a small archive in CIFAR-10's format."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from labsupport import data as data_module
from labsupport import synthetic
from labsupport.data import (
    CIFAR4_CLASSES,
    CIFAR10_URL,
    DatasetError,
    cifar4_from_archive,
    cifar4_path,
    load_cifar4,
    load_course_data,
    load_npz,
)

# ---------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtypes_range_and_balance(synthetic):
    assert synthetic.name == "synthetic"
    assert synthetic.classes == synthetic_classes()
    assert synthetic.x_train.shape == (20000, 3, 32, 32)
    assert synthetic.x_test.shape == (4000, 3, 32, 32)
    for x in (synthetic.x_train, synthetic.x_test):
        assert x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
        assert x.std() > 0.1  # images, not a constant
    assert synthetic.y_train.dtype == torch.int64
    assert torch.bincount(synthetic.y_train).tolist() == [5000] * 4
    assert torch.bincount(synthetic.y_test).tolist() == [1000] * 4
    # Shuffled: the first hundred labels are not sorted by class.
    assert not torch.equal(synthetic.y_train[:100], synthetic.y_train[:100].sort().values)


def synthetic_classes():
    return synthetic.SYNTHETIC_CLASSES


def test_synthetic_train_and_test_differ(synthetic):
    assert not torch.equal(synthetic.x_train[:10], synthetic.x_test[:10])


def test_synthetic_loads_are_equal_and_independent(synthetic):
    again = load_course_data("synthetic")
    assert torch.equal(again.x_train, synthetic.x_train)
    assert torch.equal(again.y_test, synthetic.y_test)
    again.x_train[0].zero_()  # poisoning one copy in place ...
    assert not torch.equal(load_course_data("synthetic").x_train[0], again.x_train[0])


def test_generator_is_deterministic_in_its_seed():
    a_x, a_y = synthetic.generate(16, seed=5)
    b_x, b_y = synthetic.generate(16, seed=5)
    c_x, _ = synthetic.generate(16, seed=6)
    assert a_x.dtype == np.uint8 and a_x.shape == (64, 32, 32, 3)
    assert np.array_equal(a_x, b_x) and np.array_equal(a_y, b_y)
    assert not np.array_equal(a_x, c_x)
    assert np.bincount(a_y).tolist() == [16] * 4


def test_bad_synthetic_seed_is_a_clear_error():
    with pytest.raises(DatasetError, match="seed must be a non-negative integer"):
        load_course_data("synthetic", seed=-1)


def _small_synthetic(calls):
    real = synthetic.synthetic_dataset

    def fake(n_train_per_class=5000, n_test_per_class=1000, seed=0):
        calls.append(seed)
        return real(8, 4, seed=seed)
    return fake


def test_synthetic_cache_is_written_verified_and_used(tmp_cache, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(synthetic, "synthetic_dataset", _small_synthetic(calls))
    first = load_course_data("synthetic")
    path = data_module.synthetic_cache_path(0)
    assert path.parent.parent == tmp_cache and path.is_file()
    digest = path.with_suffix(".sha256").read_text().strip()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert calls == [0]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    # A new process (no in-process cache) reads the file instead of generating.
    data_module._synthetic_arrays.cache_clear()
    second = load_course_data("synthetic")
    assert calls == [0]
    assert torch.equal(first.x_train, second.x_train)
    # The cache file is itself a valid dataset-full.npz.
    assert torch.equal(load_npz(path, classes=first.classes).x_test, first.x_test)


@pytest.mark.parametrize("damage", ["flip", "truncate", "checksum"])
def test_corrupt_synthetic_cache_is_regenerated(tmp_cache, monkeypatch, damage):
    calls: list[int] = []
    monkeypatch.setattr(synthetic, "synthetic_dataset", _small_synthetic(calls))
    first = load_course_data("synthetic")
    path = data_module.synthetic_cache_path(0)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        path.with_suffix(".sha256").write_text("0" * 64)
    data_module._synthetic_arrays.cache_clear()
    again = load_course_data("synthetic")
    assert calls == [0, 0]  # regenerated
    assert torch.equal(again.x_train, first.x_train)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == \
        path.with_suffix(".sha256").read_text().strip()


def test_synthetic_cache_name_tracks_the_generator(tmp_cache, monkeypatch):
    before = data_module.synthetic_cache_path(0)
    assert data_module.synthetic_cache_path(1) != before
    monkeypatch.setattr(np, "__version__", "0.0.0")  # the fingerprint covers numpy too
    assert data_module.synthetic_cache_path(0) != before


# ---------------------------------------------------------------------- dataset files


def small_arrays(n_train=12, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 4, n_train),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 4, n_test),
    }


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def test_uint8_nhwc_file_loads_as_float_nchw(tmp_path):
    arrays = small_arrays()
    data = load_course_data(write_npz(tmp_path / "dataset-full.npz", arrays))
    assert data.x_train.shape == (12, 3, 32, 32) and data.x_train.dtype == torch.float32
    expected = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(data.x_train, expected)
    assert data.y_train.dtype == torch.int64
    assert data.y_test.tolist() == arrays["y_test"].tolist()
    assert data.classes == CIFAR4_CLASSES and data.num_classes == 4
    assert "12 train / 8 test" in repr(data)


def test_float_nchw_file_loads_unchanged(tmp_path):
    arrays = small_arrays()
    for split in ("train", "test"):
        arrays[f"x_{split}"] = arrays[f"x_{split}"].transpose(0, 3, 1, 2) / 255.0
    data = load_npz(write_npz(tmp_path / "d.npz", arrays))
    assert data.x_test.dtype == torch.float32
    assert torch.allclose(data.x_test, torch.from_numpy(arrays["x_test"]).float())


def test_subset_takes_the_first_images(tmp_path):
    data = load_npz(write_npz(tmp_path / "d.npz", small_arrays()))
    part = data.subset(5, 3)
    assert len(part.x_train) == 5 and len(part.y_test) == 3
    assert torch.equal(part.x_train, data.x_train[:5])


def _bad(arrays, key, value):
    arrays = dict(arrays)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


BAD_FILES = {
    "missing key": (lambda a: _bad(a, "y_test", None), r"lacks the arrays \['y_test'\]"),
    "3-d images": (lambda a: _bad(a, "x_train", a["x_train"][..., 0]), "4-d image array"),
    "uint8 NCHW": (lambda a: _bad(a, "x_train", a["x_train"].transpose(0, 3, 1, 2).copy()),
                   "looks NCHW: transpose"),
    "float NHWC": (lambda a: _bad(a, "x_test", a["x_test"] / 255.0), "looks NHWC: transpose"),
    "float 0..255": (lambda a: _bad(a, "x_test", a["x_test"].transpose(0, 3, 1, 2) * 1.0),
                     r"must lie in \[0, 1\].*Divide uint8 pixels by 255"),
    "float NaN": (lambda a: _bad(a, "x_test", np.full((8, 3, 32, 32), np.nan)), "NaN"),
    "int32 images": (lambda a: _bad(a, "x_train", a["x_train"].astype(np.int32)),
                     "got dtype int32"),
    "wrong size": (lambda a: _bad(a, "x_train", np.zeros((12, 28, 28, 3), np.uint8)),
                   r"\(N, 32, 32, 3\)"),
    "label count": (lambda a: _bad(a, "y_train", a["y_train"][:5]), "one label per image"),
    "float labels": (lambda a: _bad(a, "y_train", a["y_train"] * 1.0), "integer labels"),
    "label range": (lambda a: _bad(a, "y_test", a["y_test"] + 4), r"labels must lie in 0\.\.3"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files_get_clear_errors(tmp_path, case):
    damage, message = BAD_FILES[case]
    path = write_npz(tmp_path / "dataset-full.npz", damage(small_arrays()))
    with pytest.raises(DatasetError, match=message):
        load_course_data(str(path))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_npz_is_a_clear_error(tmp_path, damage):
    path = write_npz(tmp_path / "dataset-full.npz", small_arrays())
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": os.urandom(2000),
                      "empty": b""}[damage])
    with pytest.raises(DatasetError, match="truncated or corrupt.*Delete it"):
        load_course_data(path)


def test_missing_file_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="No dataset file.*synthetic"):
        load_course_data(tmp_path / "nowhere.npz")
    with pytest.raises(DatasetError, match="Unknown dataset 'cifar10'.*'synthetic'"):
        load_course_data("cifar10")
    with pytest.raises(DatasetError, match="a name or a path"):
        load_course_data(42)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    path = write_npz(tmp_path / "d.npz", small_arrays())
    with pytest.raises(DatasetError, match="does not match"):
        load_npz(path, expected_sha256="0" * 64)


# ---------------------------------------------------------------------- CIFAR-10 → cifar4

N_PER_BATCH = 30  # three images of each CIFAR-10 class per batch file


def _batch(seed: int, name: str) -> dict:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.permutation(np.arange(N_PER_BATCH) % 10)]
    return {"batch_label": name, "labels": labels,
            "data": rng.integers(0, 256, (N_PER_BATCH, 3072), dtype=np.uint8),
            "filenames": [f"img_{seed}_{i}.png" for i in range(N_PER_BATCH)]}


@pytest.fixture()
def fake_cifar(tmp_path, monkeypatch):
    """A small archive in the official CIFAR-10 python format, as ``cifar-10-python.tar.gz``,
    with torchvision's expected md5s pointed at its files (so its integrity checks run)."""
    from torchvision.datasets import CIFAR10

    build = tmp_path / "build"
    folder = build / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(i, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = _batch(99, "testing batch 1 of 1")
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": N_PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")

    def md5(path):
        return hashlib.md5(path.read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list",
                        [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return archive, batches


@pytest.fixture()
def offline(monkeypatch):
    """No network: every URL open fails as it does without one."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(data_module, "_online", lambda *a, **k: False)


def _expected_subset(batches, names):
    xs, ys = [], []
    remap = {0: 0, 1: 1, 8: 2, 9: 3}
    for name in names:
        for row, label in zip(batches[name]["data"], batches[name]["labels"], strict=True):
            if label in remap:
                xs.append(row.reshape(3, 32, 32).transpose(1, 2, 0))
                ys.append(remap[label])
    return np.stack(xs), np.array(ys)


def _check_cifar4(data, root, batches):
    x_train, y_train = _expected_subset(batches, [f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = _expected_subset(batches, ["test_batch"])
    assert data.name == "cifar4" and data.classes == CIFAR4_CLASSES
    assert data.y_train.tolist() == y_train.tolist() and data.y_test.tolist() == y_test.tolist()
    assert len(data.y_train) == 5 * 12 and torch.bincount(data.y_train).tolist() == [15] * 4
    assert torch.equal(data.x_train, torch.from_numpy(x_train).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(data.x_test, torch.from_numpy(x_test).permute(0, 3, 1, 2).float() / 255)
    # The cache: the seed layout (uint8 NHWC), its sha256 beside it, no temporary files.
    path = cifar4_path(root)
    with np.load(path) as cached:
        assert sorted(cached.files) == ["x_test", "x_train", "y_test", "y_train"]
        assert cached["x_train"].dtype == np.uint8 and cached["x_train"].shape == (60, 32, 32, 3)
        assert np.array_equal(cached["x_test"], x_test)
    assert path.with_suffix(".sha256").read_text() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return path


def test_cifar4_builds_offline_from_a_copied_archive(tmp_path, fake_cifar, offline):
    archive, batches = fake_cifar
    root = tmp_path / "root"
    raw = cifar4_path(root).parent / "raw"
    raw.mkdir(parents=True)
    shutil.copy(archive, raw / archive.name)
    data = load_course_data("cifar4", root=root, download=False)
    _check_cifar4(data, root, batches)
    # The direct reader of the extracted archive agrees with torchvision's path.
    direct = cifar4_from_archive(raw)
    assert np.array_equal(direct["x_train"], (data.x_train * 255).round().byte()
                          .permute(0, 2, 3, 1).numpy())


def test_cifar4_downloads_through_torchvision(tmp_path, fake_cifar, monkeypatch):
    """The download path, with the network replaced by a copy of the small archive."""
    from torchvision.datasets import utils as tv_utils

    archive, batches = fake_cifar
    fetched = []

    def fake_urlretrieve(url, filename, chunk_size=None):
        fetched.append(url)
        shutil.copy(archive, filename)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", fake_urlretrieve)
    root = tmp_path / "root"
    data = load_course_data("cifar4", root=root)
    assert fetched == [CIFAR10_URL]
    _check_cifar4(data, root, batches)
    # Cached now: no second download.
    assert torch.equal(load_course_data("cifar4", root=root).x_test, data.x_test)
    assert fetched == [CIFAR10_URL]


def test_no_network_is_a_clear_error(tmp_path, offline):
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as info:
        load_course_data("cifar4", root=root)
    message = str(info.value)
    raw = cifar4_path(root).parent / "raw"
    for hint in ("cifar-10-python.tar.gz", str(raw), "dataset-full.npz", "synthetic"):
        assert hint in message
    with pytest.raises(DatasetError, match="download=False"):
        load_cifar4(root, download=False)


def test_corrupt_archive_is_a_clear_error(tmp_path, fake_cifar, offline):
    archive, _ = fake_cifar
    raw = cifar4_path(tmp_path).parent / "raw"
    raw.mkdir(parents=True)
    (raw / archive.name).write_bytes(archive.read_bytes()[:500])  # a broken copy
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_cifar4(tmp_path, download=False)


def test_cifar4_cache_with_a_bad_checksum_is_rebuilt(tmp_path, fake_cifar, offline, capsys):
    archive, batches = fake_cifar
    raw = cifar4_path(tmp_path).parent / "raw"
    raw.mkdir(parents=True)
    shutil.copy(archive, raw / archive.name)
    path = _check_cifar4(load_cifar4(tmp_path, download=False), tmp_path, batches)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01  # one flipped bit: still a readable npz
    path.write_bytes(bytes(damaged))
    capsys.readouterr()
    data = load_cifar4(tmp_path, download=False)
    out = capsys.readouterr()
    assert "does not match" in out.out and "Rebuilding" in out.out and out.err == ""
    assert path.read_bytes() == good
    _check_cifar4(data, tmp_path, batches)


def test_auto_uses_a_cached_cifar4(tmp_path, fake_cifar, offline):
    archive, batches = fake_cifar
    raw = cifar4_path(tmp_path).parent / "raw"
    raw.mkdir(parents=True)
    shutil.copy(archive, raw / archive.name)
    load_cifar4(tmp_path, download=False)
    shutil.rmtree(raw)  # the cache alone suffices
    assert load_course_data("auto", root=tmp_path).name == "cifar4"


def test_auto_falls_back_to_synthetic_with_one_notice(tmp_path, offline, capsys, monkeypatch):
    sentinel = object()
    monkeypatch.setattr(data_module, "load_synthetic", lambda seed=0: sentinel)
    assert load_course_data("auto", root=tmp_path) is sentinel
    out = capsys.readouterr()
    assert out.out.count("[labsupport]") == 1 and "synthetic" in out.out
    assert out.err == ""


def test_auto_falls_back_when_the_download_fails(tmp_path, capsys, monkeypatch):
    """Online according to the probe, but the download itself fails."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("connection reset")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(data_module, "_online", lambda *a, **k: True)
    monkeypatch.setattr(data_module, "load_synthetic", lambda seed=0: "synthetic!")
    assert load_course_data("auto", root=tmp_path) == "synthetic!"
    out = capsys.readouterr().out
    assert out.count("[labsupport]") == 1 and "CIFAR-10 is not available" in out


def test_verified_npz_round_trip(tmp_path):
    arrays = small_arrays()
    path = tmp_path / "x.npz"
    digest = data_module.write_verified_npz(path, arrays)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    back = data_module.read_verified_npz(path)
    assert back is not None and np.array_equal(back["x_train"], arrays["x_train"])
    path.write_bytes(path.read_bytes() + b"x")
    assert data_module.read_verified_npz(path) is None
    assert data_module.read_verified_npz(tmp_path / "missing.npz") is None


def test_check_images():
    data_module.check_images(torch.rand(2, 3, 8, 8))
    for bad, message in [(np.zeros((2, 3, 8, 8)), "torch.Tensor"),
                         (torch.rand(3, 8, 8), r"\(N, 3, H, W\)"),
                         (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "float"),
                         (torch.full((2, 3, 8, 8), 2.0), r"\[0, 1\]")]:
        with pytest.raises(ValueError, match=message):
            data_module.check_images(bad)


def test_npz_bytes_is_loadable():
    raw = data_module._npz_bytes(small_arrays())
    with np.load(io.BytesIO(raw)) as archive:
        assert set(archive.files) == {"x_train", "y_train", "x_test", "y_test"}


def test_auto_never_probes_the_network_under_the_autograder(tmp_path, capsys, monkeypatch):
    """A submission grades on synthetic data at once when no cifar4 is cached."""
    def no_probe(*args, **kwargs):
        raise AssertionError("the autograder must not probe the network")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setattr(data_module, "_online", no_probe)
    monkeypatch.setattr(data_module, "load_synthetic", lambda seed=0: "synthetic!")
    assert load_course_data("auto", root=tmp_path) == "synthetic!"
    assert "synthetic" in capsys.readouterr().out
