"""labsupport.runtime: device choice and its override, profiles, seeding, modes, timing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from labsupport import runtime
from labsupport.runtime import (
    DEVICE_ENV,
    DeviceError,
    Timer,
    describe_device,
    eval_mode,
    get_device,
    model_device,
    resolve_profile,
    seed_everything,
    set_deterministic,
    under_autograder,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


# ---------------------------------------------------------------------- devices


def test_default_device_follows_availability():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if runtime._mps_available() else "cpu")
    assert get_device().type == expected


def test_env_override_chooses_the_device(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "auto")
    assert get_device() == get_device("auto")


def test_argument_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "not-a-device")
    assert get_device("cpu") == torch.device("cpu")


def test_unknown_device_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(DeviceError, match=f"{DEVICE_ENV}='gpu'.*'cpu', 'cuda'"):
        get_device()
    with pytest.raises(DeviceError, match="not a device name"):
        get_device("tpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU is visible.*'cpu'"):
        get_device()


def test_unavailable_mps_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS"):
        get_device("mps")


def test_device_helpers():
    model = torch.nn.Linear(2, 2)
    assert model_device(model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
    assert describe_device(torch.device("cpu")).startswith("cpu (")


# ---------------------------------------------------------------------- profiles


def test_explicit_profiles_pass_through():
    for profile in runtime.PROFILES:
        assert resolve_profile(profile) == profile


def test_auto_profile_depends_on_the_device():
    assert resolve_profile("auto", torch.device("cpu")) == "cpu"
    assert resolve_profile("auto", torch.device("cuda")) == "full"
    assert resolve_profile("auto", torch.device("mps")) == "cpu"


@pytest.mark.parametrize("mode", ["autograde", "validate"])
def test_autograder_always_gets_smoke(monkeypatch, mode):
    monkeypatch.setenv("NBGRADER_EXECUTION", mode)
    assert under_autograder()
    assert resolve_profile("auto", torch.device("cuda")) == "smoke"
    assert resolve_profile("full") == "smoke"


def test_not_under_autograder_by_default():
    assert not under_autograder()


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown profile 'fast'.*'smoke', 'cpu', 'full'"):
        resolve_profile("fast")


# ---------------------------------------------------------------------- seeding


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_draws_reproducible():
    seed_everything(123)
    first = _draws()
    generator = seed_everything(123)
    assert _draws() == first
    seed_everything(124)
    assert _draws() != first
    # The returned generator is seeded alike, independent of the global one.
    assert torch.equal(torch.rand(4, generator=generator),
                       torch.rand(4, generator=torch.Generator().manual_seed(123)))


def test_seeded_models_are_identical():
    seed_everything(7)
    a = torch.nn.Conv2d(3, 4, 3)
    seed_everything(7)
    b = torch.nn.Conv2d(3, 4, 3)
    assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed_is_a_clear_error(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        seed_everything(seed)


def test_set_deterministic_toggles_and_restores():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        set_deterministic(before)


# ---------------------------------------------------------------------- modes and timers


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_previous_mode(training):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    model.train(training)
    with eval_mode(model) as inside:
        assert inside is model
        assert not model.training and not model[1].training
    assert model.training is training and model[1].training is training


def test_eval_mode_restores_after_an_exception():
    model = torch.nn.Linear(2, 2).train()
    with pytest.raises(KeyError), eval_mode(model):
        raise KeyError("boom")
    assert model.training


def test_timer_measures_elapsed_time():
    with Timer(torch.device("cpu")) as timer:
        sum(range(10_000))
    assert 0 < timer.seconds < 60
