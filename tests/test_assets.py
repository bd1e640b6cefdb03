"""Pre-trained-model assets: recipes, cache hits verified by sha256, rebuilds, clear errors.

Every test builds tiny models (a few channels, 64 images) from a manifest written to a
temporary folder, with the cache in another, so the suite runs in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch

from labsupport import assets, models
from labsupport.data import CourseData

TINY = {"architecture": "SimpleCNN", "config": {"channels": [4, 8, 8], "hidden": 16}}
TINY_PROFILES = {
    "smoke": {"train_images": 64, "epochs": 1, "batch_size": 8, "eval_images": 32},
    "cpu": {"train_images": 64, "epochs": 2, "batch_size": 8, "eval_images": 32},
    "full": {"train_images": None, "epochs": 2, "batch_size": 8, "eval_images": None},
}


def write_manifest(path, recipes):
    manifest = {"format": 1, "defaults": {**TINY, "profiles": TINY_PROFILES},
                "assets": recipes}
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A private cache and a manifest with two tiny assets."""
    monkeypatch.setenv("LABSUPPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABSUPPORT_PROGRESS", "0")
    manifest = write_manifest(tmp_path / "manifest.json", {
        "tiny-noise": {"training": {"procedure": "gaussian_noise", "sigma": 0.25, "seed": 3}},
        "tiny-plain": {"training": {"procedure": "standard", "seed": 3}},
    })
    monkeypatch.setenv(assets.MANIFEST_ENV, str(manifest))
    return tmp_path


@pytest.fixture(scope="module")
def data():
    """64 random training images and 32 test images, named like the offline dataset."""
    g = torch.Generator().manual_seed(0)
    return CourseData(torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 4, (64,), generator=g),
                      torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 4, (32,), generator=g),
                      ("a", "b", "c", "d"), "synthetic")


def load(name="tiny-noise", data=None, **kw):
    return assets.load_asset(name, dataset=data, profile="smoke", device="cpu", **kw)


def weights_sha(model):
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def no_build(*args, **kwargs):
    raise AssertionError("the asset was rebuilt although a valid cache file exists")


def test_first_load_builds_and_caches_then_a_hit_is_verified_by_sha256(env, data, capsys,
                                                                         monkeypatch):
    model = load(data=data)
    assert "building asset 'tiny-noise'" in capsys.readouterr().out
    assert not model.training
    path = assets.asset_path("tiny-noise", dataset=data, profile="smoke")
    assert path.is_file() and path.parent.name == "smoke" and path.parent.parent.name == "synthetic"
    _, meta = models.load_model(path)
    assert meta["sha256"] == weights_sha(model) == model.asset_meta["sha256"]

    monkeypatch.setattr(assets, "_build", no_build)
    again = load(data=data)
    assert capsys.readouterr().out == ""  # a silent hit
    assert weights_sha(again) == weights_sha(model)
    assert again.asset_meta["recipe_sha256"] == assets.get_recipe("tiny-noise").digest("smoke")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_or_truncated_cache_file_is_detected_and_rebuilt_with_one_notice(
        env, data, capsys, damage):
    model = load(data=data)
    path = assets.asset_path("tiny-noise", dataset=data, profile="smoke")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        middle = len(raw) // 2
        raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    else:
        raw = bytearray(b"not a model at all")
    path.write_bytes(bytes(raw))
    capsys.readouterr()

    rebuilt = load(data=data)
    out = capsys.readouterr().out
    assert out.count(" is corrupt (") == 1 and out.count("building asset") == 1
    assert weights_sha(rebuilt) == weights_sha(model)  # reproducible rebuild
    models.load_model(path)  # the cache is good again


def test_weights_that_do_not_match_their_recorded_sha256_are_rebuilt(env, data, capsys):
    model = load(data=data)
    path = assets.asset_path("tiny-noise", dataset=data, profile="smoke")
    payload = torch.load(path, weights_only=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] += 1.0  # tampered weights, old checksum kept
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload["weights"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getvalue())
    capsys.readouterr()

    rebuilt = load(data=data)
    assert "do not match their recorded sha256" in capsys.readouterr().out
    assert weights_sha(rebuilt) == weights_sha(model)


def test_a_changed_recipe_invalidates_the_cache(env, data, capsys):
    load(data=data)
    manifest = json.loads((env / "manifest.json").read_text())
    manifest["assets"]["tiny-noise"]["training"]["sigma"] = 0.5
    (env / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    load(data=data)
    assert "another version of its recipe" in capsys.readouterr().out


def test_a_new_synthetic_generator_invalidates_models_trained_on_the_old_one(
        env, data, capsys, monkeypatch):
    load(data=data)
    load(data=data)  # a hit: same generator
    capsys.readouterr()
    monkeypatch.setattr(assets, "synthetic_fingerprint", lambda: "0123456789ab")
    load(data=data)
    assert "another version of the synthetic dataset" in capsys.readouterr().out
    monkeypatch.setattr(assets, "_build", no_build)
    assert load(data=data).asset_meta["data_version"] == "0123456789ab"


def test_build_is_reproducible_from_recipe_and_seed(env, data, monkeypatch):
    first = load(data=data)
    monkeypatch.setenv("LABSUPPORT_CACHE", str(env / "other-cache"))
    torch.manual_seed(12345)  # the caller's RNG state must not matter
    second = load(data=data)
    assert weights_sha(first) == weights_sha(second)
    # ... and the caller's RNG is left alone by a build.
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    monkeypatch.setenv("LABSUPPORT_CACHE", str(env / "third-cache"))
    load(data=data)
    assert torch.equal(torch.rand(3), expected)


def test_noise_training_differs_from_plain_training_only_by_the_noise(env, data):
    noisy, plain = load("tiny-noise", data=data), load("tiny-plain", data=data)
    assert weights_sha(noisy) != weights_sha(plain)
    manifest = json.loads((env / "manifest.json").read_text())
    manifest["assets"]["tiny-noise"]["training"]["sigma"] = 0.0
    (env / "manifest.json").write_text(json.dumps(manifest))
    assert weights_sha(load("tiny-noise", data=data)) == weights_sha(plain)


def test_unknown_asset_gives_a_clear_error_naming_the_known_ones(env, data):
    with pytest.raises(assets.AssetError, match=r"Unknown asset 'nope'.*tiny-noise, tiny-plain"):
        load("nope", data=data)


def test_an_asset_that_can_be_neither_loaded_nor_built_gives_a_clear_error(env, data):
    write_manifest(env / "manifest.json", {"broken": {"training": {"procedure": "teleport"}}})
    with pytest.raises(assets.AssetError, match=r"could not be built.*unknown training procedure "
                                                r"'teleport'.*LABSUPPORT_CACHE"):
        load("broken", data=data)
    write_manifest(env / "manifest.json", {"nosigma": {"training": {"procedure": "gaussian_noise"}}})
    with pytest.raises(assets.AssetError, match=r"lacks 'sigma'"):
        load("nosigma", data=data)
    with pytest.raises(assets.AssetError, match="Cannot key the cache by dataset"):
        assets.load_asset("nosigma", dataset="/no/such/dataset-full.npz", profile="smoke")


def test_the_cache_is_written_atomically(env, data, monkeypatch, capsys):
    good = load(data=data)
    path = assets.asset_path("tiny-noise", dataset=data, profile="smoke")
    before = path.read_bytes()
    manifest = json.loads((env / "manifest.json").read_text())
    manifest["assets"]["tiny-noise"]["training"]["sigma"] = 0.5
    (env / "manifest.json").write_text(json.dumps(manifest))

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(models.os, "fsync", crash)  # the write dies half-way
    capsys.readouterr()
    model = load(data=data)  # built, but cannot be cached: a notice, not a crash
    assert "could not write the asset cache" in capsys.readouterr().out
    assert weights_sha(model) != weights_sha(good)
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over


def test_build_assets_builds_all_and_then_keeps_valid_ones(env, data, monkeypatch):
    paths = assets.build_assets(None, dataset=data, profile="smoke", device="cpu")
    assert sorted(paths) == ["tiny-noise", "tiny-plain"]
    assert all(p.is_file() for p in paths.values())
    monkeypatch.setattr(assets, "_build", no_build)
    assert assets.build_assets(["tiny-plain"], dataset=data, profile="smoke",
                               device="cpu") == {"tiny-plain": paths["tiny-plain"]}
    with pytest.raises(assets.AssetError, match="Unknown asset"):
        assets.build_assets(["tiny-plain", "missing"], dataset=data, profile="smoke")


def test_the_course_manifest_is_valid_and_holds_the_lab2_models(monkeypatch):
    monkeypatch.delenv(assets.MANIFEST_ENV, raising=False)
    recipes = assets.recipes()
    sigmas = {}
    for name, recipe in recipes.items():
        assert recipe.training["procedure"] in assets.PROCEDURES, name
        for profile in ("smoke", "cpu", "full"):
            sizes = recipe.sizes(profile)
            assert sizes["epochs"] >= 1, name
        if recipe.training["procedure"] == "gaussian_noise":
            sigmas[name] = recipe.training["sigma"]
    assert sigmas["lab2-noise-0.05"] == 0.05 and sigmas["lab2-noise-0.20"] == 0.20
    assert recipes["lab2-clean"].training["procedure"] == "standard"
