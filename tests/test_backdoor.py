"""Unit tests of labsupport.backdoor: triggers, stamping, poisoning, attack success (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from labsupport import backdoor as bd
from labsupport.answers import WriteYourOwn
from labsupport.attacks import pgd
from labsupport.checks import backdoor as fx


def images(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def labels(n: int = 12, classes: int = 4) -> torch.Tensor:
    return torch.arange(n) % classes


# ------------------------------------------------------------------ triggers


def test_bottom_right_trigger_occupies_the_last_rows_and_columns():
    t = bd.bottom_right_trigger()
    assert t.mask.shape == (1, 32, 32) and t.pattern.shape == (3, 32, 32) and t.alpha == 1.0
    expected = torch.zeros(32, 32)
    expected[29:, 29:] = 1
    assert torch.equal(t.mask[0], expected)
    assert torch.equal(t.pattern[:, 29:, 29:], bd.checkerboard(3).expand(3, 3, 3))
    assert t.pattern[:, :29].sum() == 0 and t.pattern[:, :, :29].sum() == 0


def test_four_corner_trigger_is_symmetric_and_in_every_corner():
    t = bd.four_corner_trigger(size=3)
    mask = t.mask[0]
    assert mask.sum() == 4 * 9
    for rows in (slice(0, 3), slice(29, 32)):
        for cols in (slice(0, 3), slice(29, 32)):
            assert mask[rows, cols].all()
    assert torch.equal(t.pattern, t.pattern.flip(-1)) and torch.equal(t.pattern, t.pattern.flip(-2))
    assert t.pattern[(t.mask.expand(3, -1, -1) == 0)].sum() == 0


def test_gaussian_trigger_is_deterministic_full_and_blended():
    a, b = bd.gaussian_noise_trigger(seed=0), bd.gaussian_noise_trigger(seed=0)
    assert torch.equal(a.pattern, b.pattern)
    assert not torch.equal(a.pattern, bd.gaussian_noise_trigger(seed=1).pattern)
    assert a.alpha == pytest.approx(0.2) and bool((a.mask == 1).all())
    assert 0.4 < a.pattern.mean() < 0.6 and 0.15 < a.pattern.std() < 0.3
    assert torch.equal(a.pattern * 255, (a.pattern * 255).round())  # 8-bit exact


def test_committed_gaussian_png_matches_the_generator():
    assert bd.GAUSSIAN_TRIGGER_PNG.is_file(), "assets/triggers/gaussian-noise-seed0.png is missing"
    assert torch.equal(bd.load_pattern_png(bd.GAUSSIAN_TRIGGER_PNG), bd.gaussian_noise_pattern(seed=0))


def test_blend_trigger_is_the_committed_png(tmp_path):
    """Lab 5's Blend trigger is loaded from the committed image, as the ANP reference loads
    its cifar_gaussian_noise.png (not drawn again)."""
    t = bd.blend_trigger(alpha=0.3)
    assert torch.equal(t.pattern, bd.load_pattern_png(bd.GAUSSIAN_TRIGGER_PNG))
    assert t.alpha == pytest.approx(0.3) and bool((t.mask == 1).all()) and t.mask.shape == (1, 32, 32)
    other = bd.save_pattern_png(torch.full((3, 32, 32), 0.4), tmp_path / "grey.png")
    assert torch.allclose(bd.blend_trigger(path=other).pattern, torch.full((3, 32, 32), 102 / 255))
    with pytest.raises(ValueError, match="shaped"):
        bd.blend_trigger(image_shape=(3, 16, 16))
    with pytest.raises(FileNotFoundError, match="committed"):
        bd.blend_trigger(path=tmp_path / "missing.png")
    source = (Path(__file__).resolve().parents[1] / "notebooks" / "lab5_backdoor_anp.py").read_text()
    assert "bd.blend_trigger(" in source, "Lab 5's experiment must load the committed trigger"


def test_neuron_order_is_smallest_mask_first():
    mask = {"b": torch.tensor([0.5, 0.1]), "a": torch.tensor([0.5, 0.9, 0.0])}
    assert bd.neuron_order(mask) == [("a", 2, 0.0), ("b", 1, pytest.approx(0.1)), ("a", 0, 0.5),
                                     ("b", 0, 0.5), ("a", 1, pytest.approx(0.9))]


def test_png_round_trip(tmp_path):
    pattern = bd.gaussian_noise_pattern(seed=3, image_shape=(3, 8, 8))
    path = bd.save_pattern_png(pattern, tmp_path / "p.png")
    assert torch.equal(bd.load_pattern_png(path), pattern)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": torch.ones(1, 4, 4), "pattern": torch.ones(3, 4, 4), "alpha": 1.5}, "alpha"),
        ({"mask": torch.ones(1, 4, 4), "pattern": torch.ones(3, 4, 4), "alpha": -0.1}, "alpha"),
        ({"mask": torch.ones(4, 4), "pattern": torch.ones(3, 4, 4)}, "(C, H, W)"),
        ({"mask": torch.ones(1, 4, 5), "pattern": torch.ones(3, 4, 4)}, "does not fit"),
        ({"mask": torch.ones(2, 4, 4), "pattern": torch.ones(3, 4, 4)}, "does not fit"),
        ({"mask": torch.ones(1, 4, 4) * 2, "pattern": torch.ones(3, 4, 4)}, "[0, 1]"),
        ({"mask": torch.ones(1, 4, 4, dtype=torch.uint8), "pattern": torch.ones(3, 4, 4)}, "float"),
    ],
)
def test_trigger_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        bd.Trigger(**kwargs)


def test_trigger_shape_checks():
    with pytest.raises(ValueError, match="does not fit twice"):
        bd.bottom_right_trigger(size=20)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        bd.bottom_right_trigger(image_shape=(32, 32))


# ------------------------------------------------------------------ stamping


def test_stamp_matches_the_formula_and_leaves_x_alone():
    x = images()
    g = torch.Generator().manual_seed(1)
    trigger = bd.Trigger(torch.rand(1, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g), 0.3)
    before = x.clone()
    out = bd.stamp(x, trigger)
    m, p, a = trigger.mask, trigger.pattern, trigger.alpha
    expected = (1 - m) * x + m * ((1 - a) * x + a * p)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()


def test_stamp_alpha_one_pastes_the_pattern_exactly():
    x = images()
    t = bd.bottom_right_trigger()
    out = bd.stamp(x, t)
    assert torch.equal(out[:, :, 29:, 29:], t.pattern[:, 29:, 29:].expand(len(x), -1, -1, -1))
    assert torch.equal(out[:, :, :29], x[:, :, :29]) and torch.equal(out[:, :, :, :29], x[:, :, :, :29])


def test_stamp_alpha_zero_is_identity_and_dtype_kept():
    x = images().double()
    out = bd.stamp(x, bd.gaussian_noise_trigger(alpha=0.0))
    assert out.dtype == torch.float64 and torch.equal(out, x)


def test_stamp_rejects_bad_input():
    t = bd.bottom_right_trigger()
    with pytest.raises(ValueError, match="batch"):
        bd.stamp(torch.rand(3, 32, 32), t)
    with pytest.raises(ValueError, match="floating point"):
        bd.stamp(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), t)
    with pytest.raises(ValueError, match="image_shape"):
        bd.stamp(torch.rand(2, 3, 16, 16), t)
    with pytest.raises(ValueError, match="Trigger"):
        bd.stamp(torch.rand(2, 3, 32, 32), (t.mask, t.pattern))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stamp_on_gpu_matches_cpu():
    x = images()
    t = bd.gaussian_noise_trigger()
    assert torch.allclose(bd.stamp(x.cuda(), t).cpu(), bd.stamp(x, t), atol=1e-6)


# ------------------------------------------------------------------ poisoning


def test_badnets_poisons_non_target_and_relabels():
    x, y = images(200), labels(200)
    data = bd.badnets(x, y, target=1, rate=0.1, seed=0)
    assert len(data.indices) == 20 and data.rate == pytest.approx(0.1)
    assert bool((y[data.indices] != 1).all()) and bool((data.y[data.indices] == 1).all())
    assert torch.equal(data.x[data.indices], bd.stamp(x[data.indices], data.trigger))
    clean = ~data.is_poisoned
    assert torch.equal(data.x[clean], x[clean]) and torch.equal(data.y[clean], y[clean])
    assert torch.equal(data.indices, data.indices.sort().values)


def test_poisoning_is_seeded_and_leaves_inputs_alone():
    x, y = images(100), labels(100)
    x0, y0 = x.clone(), y.clone()
    a = bd.blend(x, y, target=0, rate=0.2, seed=5)
    b = bd.blend(x, y, target=0, rate=0.2, seed=5)
    c = bd.blend(x, y, target=0, rate=0.2, seed=6)
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_clean_label_poisoning_keeps_labels_and_uses_transform():
    x, y = images(100), labels(100)
    seen = {}

    def darken(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        seen["labels"] = ys.clone()
        return xs * 0.5

    t = bd.four_corner_trigger()
    data = bd.poison_dataset(x, y, t, target=2, rate=0.1, eligible="target", relabel=False,
                             transform=darken, seed=0)
    assert len(data.indices) == 10 and bool((y[data.indices] == 2).all())
    assert torch.equal(data.y, y) and bool((seen["labels"] == 2).all())
    assert torch.allclose(data.x[data.indices], bd.stamp(x[data.indices] * 0.5, t))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"target": 7}, "Unknown target"),
        ({"target": 4, "num_classes": 4}, "Unknown target"),
        ({"target": 0.5}, "class index"),
        ({"eligible": "some"}, "eligible"),
        ({"rate": 0.9, "eligible": "target"}, "eligible"),
    ],
)
def test_poison_dataset_rejects_bad_input(kwargs, message):
    x, y = images(40), labels(40)
    args = {"target": 0, "rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        bd.poison_dataset(x, y, bd.bottom_right_trigger(), **args)


def test_poison_dataset_rejects_mismatched_labels_and_bad_transforms():
    x = images(40)
    with pytest.raises(ValueError, match="one integer label"):
        bd.poison_dataset(x, labels(39), bd.bottom_right_trigger(), target=0, rate=0.1)
    with pytest.raises(ValueError, match="transform"):
        bd.poison_dataset(x, labels(40), bd.bottom_right_trigger(), target=0, rate=0.1,
                          transform=lambda xs, ys: xs[:, :1])
    with pytest.raises(ValueError, match="outside"):
        bd.poison_dataset(x, labels(40), bd.bottom_right_trigger(), target=0, rate=0.1,
                          transform=lambda xs, ys: xs + 2)


# ------------------------------------------------------------------ evaluation


class CornerDetector(nn.Module):
    """Predicts class 0 when the bottom-right pixel is white, else the class coded in pixel
    (0, 0): a stand-in backdoored model with a known answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coded = (x[:, 0, 0, 0] * 3.999).long()
        out = nn.functional.one_hot(coded, 4).float()
        triggered = x[:, :, -1, -1].mean(1) > 0.99
        out[triggered] = nn.functional.one_hot(torch.zeros_like(coded), 4).float()[triggered]
        return out


def test_attack_success_excludes_the_target_class():
    y = labels(40)
    x = images(40)
    x[:, 0, 0, 0] = (y.float() + 0.5) / 4  # the detector's clean prediction is the label
    model = CornerDetector()
    t = bd.bottom_right_trigger()
    assert bd.clean_accuracy(model, x, y) == 1.0
    assert bd.attack_success_rate(model, x, y, t, target=0) == 1.0
    # Target 1: the trigger sends everything to 0, so no success; class-1 images excluded.
    assert bd.attack_success_rate(model, x, y, t, target=1) == 0.0
    x_trig, y_keep = bd.attack_test_set(x, y, t, target=2)
    assert len(x_trig) == 30 and bool((y_keep != 2).all())


def test_attack_success_needs_non_target_images():
    x, y = images(4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="No test image"):
        bd.attack_success_rate(CornerDetector(), x, y, bd.bottom_right_trigger(), target=0)


# ------------------------------------------------------------------ Lab 5's answers, withheld

#: Package functions that answer (or do most of) a Lab 5 task.
LAB5_ANSWERS = {
    bd.checkerboard: "triggers", bd.bottom_right_trigger: "triggers",
    bd.four_corner_trigger: "triggers", bd.gaussian_noise_pattern: "triggers",
    bd.gaussian_noise_trigger: "triggers", bd.stamp: "stamp",
    bd.eligible_indices: "poison_dataset", bd.poison_dataset: "poison_dataset",
    bd.badnets: "poison_dataset", bd.blend: "poison_dataset",
    bd.attack_test_set: "attack_success", bd.attack_success_rate: "attack_success",
    fx.perturbed_copy: "anp_perturb",
}
CELL = "/tmp/ipykernel_4242/{}.py"  # how ipykernel names the code of a notebook cell


def test_lab5_answers_are_withheld():
    for function, task in LAB5_ANSWERS.items():
        assert getattr(function, "__withheld_task__", None) == f"Lab 5, task {task}", function
        assert not hasattr(function, "__wrapped__")


def test_withheld_answers_refuse_inside_a_notebook_function_only():
    namespace = {"bd": bd, "fx": fx, "x": images(2), "t": bd.bottom_right_trigger()}
    exec(compile("def stamp(x, t):\n    return bd.stamp(x, t)\n\n"
                 "def corner(shape):\n    return bd.four_corner_trigger(image_shape=shape)\n",
                 CELL.format(1), "exec"), namespace)
    with pytest.raises(WriteYourOwn, match="Lab 5, task stamp"):
        namespace["stamp"](namespace["x"], namespace["t"])
    with pytest.raises(WriteYourOwn, match="corner"):
        namespace["corner"]((3, 16, 16))
    # At a cell's top level (a test cell's reference), and from library code, they work.
    exec(compile("out = bd.stamp(x, t)\ncopy = fx.perturbed_copy(fx.bn_cnn(), "
                 "{n: torch.ones(l.num_features) for n, l in fx.neuron_layers(fx.bn_cnn()).items()})",
                 CELL.format(2), "exec"), {**namespace, "torch": torch})
    assert bd.badnets(images(8), labels(8), target=0, rate=0.25).indices.numel() == 2


# ------------------------------------------------------------------ Lab 5's test fixtures


def test_one_sided_model_is_fooled_from_about_half_of_the_random_starts():
    model = fx.OneSidedModel()
    x, y = fx.one_sided_data(64)
    assert bool((model(x).argmax(1) == y).all())
    eps = fx.ONE_SIDED_EPS
    fooled = [(model(pgd(model, x, y, eps=eps, steps=4, seed=s)).argmax(1) != y).float().mean()
              for s in range(3)]
    assert all(0.25 < float(f) < 0.75 for f in fooled), fooled
    never = pgd(model, x, y, eps=eps, steps=4, random_start=False)
    assert bool((model(never).argmax(1) == y).all())


def test_full_pgd_runs_on_the_linear_classifier_end_on_the_corner():
    model = fx.linear_classifier(seed=1)
    x, y = fx.clean_label_data(model, 16, seed=1)
    weight = model[1].weight.detach()
    corner = (x + 0.05 * (weight[1 - y] - weight[y]).sign().view_as(x)).clamp(0, 1)
    for seed in (0, 5):
        assert torch.allclose(pgd(model, x, y, eps=0.05, steps=10, seed=seed), corner, atol=1e-6)
    early = pgd(model, x, y, eps=0.05, steps=10, seed=0, early_stop=True)
    assert not torch.allclose(early, corner, atol=1e-6)


def test_oracle_backdoored_to_given_stamped_images():
    t = bd.bottom_right_trigger(image_shape=fx.IMAGE_SHAPE)
    x, y = fx.oracle_data(24, marked=0.5)
    stamped = bd.stamp(x, t)
    marked = x[:, 1, 8, 8] > 0.5
    by_trigger = fx.BackdoorOracle(t, target=0)
    assert torch.equal(by_trigger(stamped).argmax(1) == 0, marked | (y == 0))
    half = bd.stamp(x, t.with_alpha(0.5))  # what a wrong stamp might produce
    by_images = fx.BackdoorOracle(t, target=0, stamped=half)
    assert torch.equal(by_images(half).argmax(1) == 0, marked | (y == 0))
    assert torch.equal(by_trigger(half).argmax(1), y)
    assert torch.equal(by_images(x).argmax(1), y) and torch.equal(by_images(stamped).argmax(1), y)
