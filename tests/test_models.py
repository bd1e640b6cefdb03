"""labsupport.models: the course CNN, its named last conv block, saving and loading."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import torch
from torch import nn

from labsupport import models
from labsupport.models import (
    CorruptModelFile,
    SimpleCNN,
    atomic_write_bytes,
    build_model,
    load_model,
    save_model,
)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return SimpleCNN().eval()


def test_forward_shape_and_classes(model):
    assert model(torch.rand(5, 3, 32, 32)).shape == (5, 4)
    assert SimpleCNN(num_classes=10)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_normalisation_is_inside_the_model(model):
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(models.CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.CIFAR_STD).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    assert model.normalize.mean.requires_grad is False  # a buffer, not trained


@pytest.mark.parametrize("shape, message", [
    ((3, 32, 32), r"unsqueeze\(0\)"),
    ((2, 32, 32, 3), r"permute\(0, 3, 1, 2\)"),
    ((2, 3, 28, 28), "32x32"),
])
def test_bad_input_shapes_get_clear_errors(model, shape, message):
    with pytest.raises(ValueError, match=message):
        model(torch.rand(shape))


def test_integer_images_get_a_clear_error(model):
    with pytest.raises(ValueError, match=r"x.float\(\) / 255"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_last_conv_block_is_addressable_by_name(model):
    named = dict(model.named_modules())
    block = named[SimpleCNN.LAST_CONV]
    assert block is model.last_conv is model.conv3
    conv, bn, relu, pool = block
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 128
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert isinstance(pool, nn.MaxPool2d)
    # Nothing convolutional between it and the classifier.
    names = [name for name, _ in model.named_children()]
    assert names.index(SimpleCNN.LAST_CONV) == names.index("classifier") - 1


def test_features_are_the_last_blocks_activations(model):
    x = torch.rand(3, 3, 32, 32)
    seen = {}
    model.last_conv[2].register_forward_hook(lambda m, i, o: seen.setdefault("relu", o))
    logits = model(x)
    features = model.features(x)
    assert features.shape == (3, 128, 8, 8) and features.min() >= 0
    assert torch.allclose(features, seen["relu"])
    assert torch.allclose(model.classifier(model.last_conv[3](features)), logits, atol=1e-6)


def test_conv_block_count_is_checked():
    with pytest.raises(ValueError, match="three conv blocks"):
        SimpleCNN(channels=(8, 16))


def test_save_load_round_trip_with_metadata(tmp_path, model):
    model = SimpleCNN(channels=(8, 16, 32), hidden=24)
    with torch.no_grad():  # non-default batch-norm statistics must survive too
        model.conv1[1].running_mean.uniform_()
    path = tmp_path / "sub" / "model.pt"
    meta = save_model(model, path, dataset="synthetic", seed=7, epochs=3, note="unit test")
    loaded, back = load_model(path)
    assert back == meta
    assert back["architecture"] == "SimpleCNN" and back["dataset"] == "synthetic"
    assert back["seed"] == 7 and back["epochs"] == 3 and back["note"] == "unit test"
    assert back["config"]["channels"] == [8, 16, 32] and back["config"]["hidden"] == 24
    assert len(back["sha256"]) == 64
    assert not loaded.training
    model.eval()
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_saved_checksum_covers_the_weights(tmp_path, model):
    path = tmp_path / "m.pt"
    meta = save_model(model, path, dataset="synthetic", seed=0)
    payload = torch.load(path, weights_only=True)
    assert hashlib.sha256(payload["weights"]).hexdigest() == meta["sha256"]


def test_corrupt_file_raises_corrupt_model_file(tmp_path, model):
    path = tmp_path / "m.pt"
    save_model(model, path, dataset="synthetic", seed=0)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = os.urandom(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptModelFile, match="Delete it"):
        load_model(path)


def test_truncated_file_raises_corrupt_model_file(tmp_path, model):
    path = tmp_path / "m.pt"
    save_model(model, path, dataset="synthetic", seed=0)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptModelFile, match="not a readable"):
        load_model(path)


def test_tampered_weights_fail_the_checksum(tmp_path, model):
    path = tmp_path / "m.pt"
    save_model(model, path, dataset="synthetic", seed=0)
    payload = torch.load(path, weights_only=True)
    state = torch.load(io.BytesIO(payload["weights"]), weights_only=True)
    state["conv1.0.weight"] += 1
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload["weights"] = buffer.getvalue()
    torch.save(payload, path)
    with pytest.raises(CorruptModelFile, match="does not match"):
        load_model(path)


def test_weights_that_do_not_fit_raise_corrupt_model_file(tmp_path, model):
    path = tmp_path / "m.pt"
    save_model(model, path, dataset="synthetic", seed=0)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["config"]["hidden"] = 8  # a config the weights do not fit
    torch.save(payload, path)
    with pytest.raises(CorruptModelFile, match="do not fit"):
        load_model(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model"):
        load_model(tmp_path / "none.pt")


def test_save_model_rejects_what_it_could_not_load(tmp_path, model):
    with pytest.raises(ValueError, match="register_architecture"):
        save_model(nn.Linear(2, 2), tmp_path / "m.pt", dataset="x", seed=0)
    with pytest.raises(ValueError, match="sha256"):
        save_model(model, tmp_path / "m.pt", dataset="x", seed=0, sha256="forged")
    assert not (tmp_path / "m.pt").exists()


def test_registered_architectures_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "ARCHITECTURES", dict(models.ARCHITECTURES))

    @models.register_architecture
    class Tiny(nn.Module):
        def __init__(self, width: int = 3) -> None:
            super().__init__()
            self.config = {"width": width}
            self.fc = nn.Linear(width, 2)

    save_model(Tiny(width=5), tmp_path / "t.pt", dataset="x", seed=0)
    loaded, meta = load_model(tmp_path / "t.pt")
    assert isinstance(loaded, Tiny) and loaded.fc.in_features == 5
    assert isinstance(build_model("Tiny"), Tiny)
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model("ResNet")


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "a" / "b.bin"
    old_umask = os.umask(0o022)
    try:
        atomic_write_bytes(path, b"first")
        atomic_write_bytes(path, b"second")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.bin"]
    assert path.stat().st_mode & 0o777 == 0o644  # the umask applies (not mkstemp's 0600)


def test_atomic_write_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    path = tmp_path / "b.bin"
    atomic_write_bytes(path, b"good")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"bad" * 1000)
    assert path.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin"]
