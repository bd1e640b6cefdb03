"""labsupport.pruning (Lab 4's toolkit and asset procedures) and Lab 4's test fixtures."""

from __future__ import annotations

import copy

import pytest
import torch

from labsupport import assets, pruning
from labsupport.answers import WriteYourOwn
from labsupport.checks import pruning as fx
from labsupport.models import SimpleCNN

CELL = "/tmp/ipykernel_4343/{}.py"  # how ipykernel names the code of a notebook cell


def test_channel_activations_are_the_pooled_block_output_in_eval_mode():
    model = fx.tiny_cnn(seed=1).train()
    x = fx.images(70, seed=1)
    state = fx.model_state(model)
    acts = pruning.channel_activations(model, x, batch_size=32)
    fx.assert_close(acts, fx.block_output(model, x).mean(dim=(0, 2, 3)), atol=1e-5,
                    what="activations")
    assert model.training and all(torch.equal(v, state[k]) for k, v in fx.model_state(model).items())
    before_pool = model.eval().features(x).mean(dim=(0, 2, 3))
    assert not torch.allclose(acts, before_pool, atol=1e-3), "after pooling, not before"
    with pytest.raises(ValueError, match="at least one image"):
        pruning.channel_activations(model, x[:0])


def test_pruning_zeroes_the_batch_norm_and_nothing_else():
    model = fx.tiny_cnn()
    x = fx.images(8)
    state = fx.model_state(model)
    pruned = pruning.prune_channels(model, [0, 3])
    out = fx.block_output(pruned, x)
    assert float(out[:, [0, 3]].abs().max()) == 0
    fx.assert_close(out[:, 4:], fx.block_output(model, x)[:, 4:], what="other channels")
    assert pruning.pruned_channels(pruned) == [0, 3] and pruning.pruned_channels(model) == []
    assert all(torch.equal(v, state[k]) for k, v in fx.model_state(model).items())
    # The pitfall the lab explains: zeroing the convolution leaves the batch norm's constant.
    conv_only = copy.deepcopy(model)
    with torch.no_grad():
        conv_only.last_conv[0].weight[:3] = 0
    constant = fx.block_output(conv_only, x)[:, :3]
    assert float(constant.abs().max()) > 0 and float(constant.std(dim=(0, 2, 3)).max()) == 0
    with pytest.raises(ValueError, match="channels must lie"):
        pruning.prune_channels(model, [12])
    with pytest.raises(ValueError, match="last_conv"):
        pruning.prune_channels(torch.nn.Linear(2, 2), [0])


def test_lab4_answers_are_withheld():
    assert pruning.channel_activations.__withheld_task__ == "Lab 4, task channel_activations"
    assert pruning.prune_channels.__withheld_task__ == "Lab 4, task prune_channels"
    namespace = {"pruning": pruning, "model": fx.tiny_cnn(), "x": fx.images(4)}
    exec(compile("def prune_channels(model, channels):\n"
                 "    return pruning.prune_channels(model, channels)\n",
                 CELL.format(1), "exec"), namespace)
    with pytest.raises(WriteYourOwn, match="Lab 4, task prune_channels"):
        namespace["prune_channels"](namespace["model"], [0])
    exec(compile("acts = pruning.channel_activations(model, x)\n", CELL.format(2), "exec"),
         namespace)
    assert namespace["acts"].shape == (12,)


def test_procedures_are_registered_and_recipes_name_them():
    assert {"badnets", "badnets_pruning_aware"} <= set(assets.PROCEDURES)
    for name in ("lab4-badnet", "lab4-badnet-pruning-aware"):
        recipe = assets.get_recipe(name)
        assert recipe.training["procedure"] in assets.PROCEDURES
        assert {"smoke", "cpu", "full"} <= set(recipe.spec["profiles"])


def _data(n=96):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g), torch.arange(n) % 4


def test_badnets_procedure_is_deterministic_and_poisons_with_the_patch():
    x, y = _data()
    params = {"target": 0, "rate": 0.25, "trigger": "checkerboard", "batch_size": 32}
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SimpleCNN(4, channels=(4, 8, 8), hidden=16)
        pruning.train_badnets(model, x, y, params=params, epochs=1, seed=0)
        weights.append(fx.model_state(model))
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())
    trigger = pruning.patch_trigger("color", size=4)
    assert float(trigger.mask.sum()) == 16 and trigger.alpha == 1.0
    assert torch.equal(trigger.pattern[:, -1, -1], torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(assets.AssetError, match="unknown trigger"):
        pruning.patch_trigger("star")


def test_pruning_aware_procedure_restores_the_dormant_channels():
    x, y = _data()
    torch.manual_seed(0)
    model = SimpleCNN(4, channels=(4, 8, 8), hidden=16)
    params = {"target": 0, "rate": 0.25, "prune_fraction": 0.5, "batch_size": 32,
              "activation_images": 64, "restore_bias_shift": 0.0}
    history = pruning.train_pruning_aware(model, x, y, params=params, epochs=2, seed=0)
    assert len(history.loss) == 2 and not model.training
    assert pruning.pruned_channels(model) == [], "the pruned channels are restored"
    with pytest.raises(assets.AssetError, match="prune_fraction"):
        pruning.train_pruning_aware(model, x, y, params={"prune_fraction": 1.0}, epochs=2, seed=0)


def test_fixtures():
    model = fx.tiny_cnn()
    x, y = fx.sweep_data(model)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert 0.45 < accuracy < 0.75  # a relative drop differs from a drop in points
    with fx.count_images(model.conv1) as seen:
        twin = copy.deepcopy(model)
        with torch.no_grad():
            twin(x[:5])
            model(x[:3])
    with torch.no_grad():
        twin(x)  # the copy's hook no longer counts
    assert seen["images"] == 8
    with fx.count_images(model.conv1, training=True) as seen, torch.no_grad():
        model.eval()(x[:4])
    assert seen["images"] == 0
    curve = fx.reference_curve(model, x, y, list(range(12)))
    assert len(curve) == 13 and abs(curve[0] - accuracy) < 1e-9
    table = fx.TableModel([2, 0, 1], 3)
    assert table(fx.table_images(3)).argmax(1).tolist() == [2, 0, 1]
