"""labsupport.train: the loop around a step, progress under the autograder, evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labsupport.models import SimpleCNN
from labsupport.train import (
    History,
    evaluate,
    fit,
    make_loader,
    predict,
    progress,
    train_standard,
)


@pytest.fixture(scope="module")
def tiny(synthetic):
    """128 training and 64 test images of the synthetic dataset."""
    return synthetic.subset(128, 64)


def small_model(seed=0):
    torch.manual_seed(seed)
    return SimpleCNN(channels=(8, 16, 16), hidden=32)


def sgd_step(optimizer):
    """A plain cross-entropy step (the package exports none: it is Lab 1's task)."""

    def step(model, x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def test_fit_runs_and_records_history(tiny, quiet):
    model = small_model()
    loader = make_loader(tiny.x_train, tiny.y_train, batch_size=32)
    seen = []
    step = sgd_step(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    history = fit(model, loader, step, epochs=2, eval_data=(tiny.x_test, tiny.y_test),
                  on_epoch_end=lambda epoch, h: seen.append((epoch, len(h.loss))))
    assert isinstance(history, History)
    assert len(history.loss) == len(history.eval_accuracy) == len(history.epoch_seconds) == 2
    assert all(0 <= a <= 1 for a in history.eval_accuracy)
    assert history.seconds == pytest.approx(sum(history.epoch_seconds)) and history.seconds > 0
    assert seen == [(0, 1), (1, 2)]
    assert not model.training  # fit leaves the model in eval mode


def test_loss_decreases_on_a_tiny_set(tiny, quiet):
    model = small_model()
    history = train_standard(model, tiny.x_train, tiny.y_train, epochs=8, batch_size=32,
                             lr=0.05)
    assert history.loss[-1] < 0.7 * history.loss[0]
    assert evaluate(model, tiny.x_train, tiny.y_train) > 0.5  # it learns the training set


def test_step_sees_batches_on_the_models_device(tiny, quiet):
    model = small_model()
    shapes = []

    def step(m, x, y):
        assert m.training and x.device == y.device == torch.device("cpu")
        shapes.append(len(x))
        return 1.0

    history = fit(model, make_loader(tiny.x_train[:70], tiny.y_train[:70], batch_size=32),
                  step, epochs=1)
    assert shapes == [32, 32, 6] and history.loss == [1.0]


def test_training_is_reproducible(tiny, quiet):
    weights = []
    for _ in range(2):
        model = small_model(seed=3)
        train_standard(model, tiny.x_train[:64], tiny.y_train[:64], epochs=1, batch_size=16,
                       seed=5)
        weights.append(model.classifier[-1].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("n, batch_size, epochs", [(32, 32, 1), (32, 16, 1), (48, 16, 1),
                                                   (64, 16, 2)])
def test_train_standard_on_very_few_batches(tiny, quiet, n, batch_size, epochs):
    """One-cycle schedules of 1 to 8 steps (smoke profiles) and no momentum."""
    model = small_model()
    history = train_standard(model, tiny.x_train[:n], tiny.y_train[:n], epochs=epochs,
                             batch_size=batch_size, momentum=0.0)
    assert len(history.loss) == epochs


def test_fit_rejects_bad_arguments(tiny):
    model = small_model()
    step = sgd_step(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="epochs must be non-negative"):
        fit(model, make_loader(tiny.x_train, tiny.y_train), step, epochs=-1)
    with pytest.raises(ValueError, match="no images"):
        make_loader(tiny.x_train[:0], tiny.y_train[:0])
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], step, epochs=1)
    with pytest.raises(ValueError, match="disagree in length"):
        make_loader(tiny.x_train[:3], tiny.y_train[:2])


def test_make_loader_shuffles_reproducibly(tiny):
    def order(seed):
        return torch.cat([y for _, y in make_loader(tiny.x_train, tiny.y_train, seed=seed)])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    ordered = make_loader(tiny.x_train, tiny.y_train, shuffle=False, batch_size=1000)
    assert torch.equal(next(iter(ordered))[1], tiny.y_train)


# ---------------------------------------------------------------------- progress


def test_progress_is_silent_under_the_autograder(capfd, monkeypatch):
    monkeypatch.delenv("LABSUPPORT_PROGRESS", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert list(progress(range(5), desc="quiet")) == [0, 1, 2, 3, 4]
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""


def test_progress_shows_a_bar_otherwise(capfd, monkeypatch):
    """The contrast to the test above: the bar does write to stderr normally."""
    monkeypatch.delenv("LABSUPPORT_PROGRESS", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert list(progress(range(5), desc="loud", leave=True)) == [0, 1, 2, 3, 4]
    assert "loud" in capfd.readouterr().err


def test_progress_can_be_turned_off(capfd, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("LABSUPPORT_PROGRESS", "0")
    list(progress(range(3), desc="off", leave=True))
    assert capfd.readouterr().err == ""


def test_training_writes_nothing_to_stderr_under_the_autograder(tiny, capfd, monkeypatch):
    monkeypatch.delenv("LABSUPPORT_PROGRESS", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    train_standard(small_model(), tiny.x_train[:32], tiny.y_train[:32], epochs=1,
                   eval_data=(tiny.x_test[:16], tiny.y_test[:16]))
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_leaves_the_mode_unchanged(tiny, training):
    model = small_model().train(training)
    running = model.conv1[1].running_mean.clone()
    evaluate(model, tiny.x_test, tiny.y_test)
    assert model.training is training
    assert torch.equal(model.conv1[1].running_mean, running)  # evaluated in eval mode


def test_evaluate_and_predict_agree_with_a_direct_computation(tiny):
    model = small_model().eval()
    with torch.no_grad():
        expected = model(tiny.x_test).argmax(1)
    predicted = predict(model, tiny.x_test, batch_size=7)  # batches of uneven size
    assert torch.equal(predicted, expected)
    accuracy = (expected == tiny.y_test).float().mean().item()
    assert evaluate(model, tiny.x_test, tiny.y_test, batch_size=10) == pytest.approx(accuracy)
    assert predict(model, tiny.x_test[:0]).shape == (0,)


def test_evaluate_rejects_bad_input(tiny):
    model = small_model()
    with pytest.raises(ValueError, match="disagree in length"):
        evaluate(model, tiny.x_test[:3], tiny.y_test[:4])
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, tiny.x_test[:0], tiny.y_test[:0])


def test_the_package_exports_no_training_step():
    """Lab 1's standard_train is a step for fit: the package must not hand one out."""
    import labsupport.train

    assert not hasattr(labsupport.train, "sgd_step")


def test_train_standard_updates_the_weights(tiny, quiet):
    model = small_model()
    before = model.classifier[-1].weight.detach().clone()
    history = train_standard(model, tiny.x_train[:16], tiny.y_train[:16], epochs=1,
                             batch_size=16)
    assert history.loss[0] > 0
    assert not torch.equal(model.classifier[-1].weight, before)
