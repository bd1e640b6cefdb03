"""Shared fixtures: private caches, the synthetic dataset, and models trained once a session.

The trained models (``standard_model``) are session-scoped so the slow attack-strength
test and the science tests of the synthetic dataset share them. Their training sizes are
the smallest that pass the science tests with margin (see ``tests/test_synthetic_science.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# OpenMP threads that spin while waiting make PyTorch several times slower on a busy
# machine (measured here: a 2-thread training step 5x slower than 1 thread with 4 other
# jobs running). Passive waiting costs little when the machine is idle. Must be set
# before torch is imported; inherited by the notebook kernels the course tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from labsupport import data as data_module  # noqa: E402
from labsupport.allocator import keep_freed_memory  # noqa: E402
from labsupport.data import CourseData, load_course_data  # noqa: E402
from labsupport.models import SimpleCNN  # noqa: E402
from labsupport.runtime import seed_everything  # noqa: E402
from labsupport.train import evaluate, train_standard  # noqa: E402

keep_freed_memory()  # as the labs do (get_device): large forward passes run up to 2x faster

#: The budget of the science tests: training images, epochs, and test images attacked.
SCIENCE_TRAIN = 4000
SCIENCE_EPOCHS = 3
SCIENCE_TEST = 1000


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch) -> Iterator:
    """A private, empty LABSUPPORT_CACHE (and no in-process synthetic cache) for one test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(data_module.CACHE_ENV, str(cache))
    data_module._synthetic_arrays.cache_clear()
    yield cache
    data_module._synthetic_arrays.cache_clear()


@pytest.fixture()
def quiet(monkeypatch) -> None:
    """No progress bars (as the autograder would have it), and not under the autograder."""
    monkeypatch.setenv("LABSUPPORT_PROGRESS", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


@pytest.fixture(scope="session")
def synthetic() -> CourseData:
    """The full synthetic dataset (from the user's cache; generated on the first run)."""
    return load_course_data("synthetic")


def _train_standard(data: CourseData, seed: int = 0) -> torch.nn.Module:
    seed_everything(seed)
    model = SimpleCNN(num_classes=data.num_classes)
    train_standard(model, data.x_train[:SCIENCE_TRAIN], data.y_train[:SCIENCE_TRAIN],
                   epochs=SCIENCE_EPOCHS, seed=seed, desc="standard")
    return model.eval()


@pytest.fixture(scope="session")
def standard_model(synthetic) -> torch.nn.Module:
    """SimpleCNN trained normally on the synthetic dataset at the `cpu`-sized budget."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSUPPORT_PROGRESS", "0")
        model = _train_standard(synthetic)
    return model


@pytest.fixture(scope="session")
def standard_accuracy(standard_model, synthetic) -> float:
    """Clean accuracy of ``standard_model`` on the whole synthetic test set."""
    return evaluate(standard_model, synthetic.x_test, synthetic.y_test)
