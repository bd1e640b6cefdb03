"""Lab 3's support code: the suspects and their secret, the reference method, the fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from labsupport import assets
from labsupport import neural_cleanse as nc
from labsupport.checks import neural_cleanse as fx
from labsupport.paths import course_asset

SECRETS = [f"secret-{i}" for i in range(12)]


def test_plan_is_deterministic_and_spread_over_secrets():
    plans = [nc.plan(s) for s in SECRETS]
    again = nc.plan(SECRETS[0])
    assert again.backdoored == plans[0].backdoored and again.target == plans[0].target
    assert torch.equal(again.trigger.pattern, plans[0].trigger.pattern)
    assert {p.backdoored for p in plans} == {"A", "B"}
    assert len({p.target for p in plans}) >= 3
    assert len({int(p.trigger.mask[0].nonzero()[0, 0]) for p in plans}) >= 2
    for p in plans:
        assert int(p.trigger.mask.sum()) == nc.TRIGGER_SIZE ** 2 and p.trigger.alpha == 1
        assert p.clean != p.backdoored


def test_default_secret_and_fingerprint(monkeypatch):
    monkeypatch.delenv(nc.SECRET_ENV, raising=False)
    assert nc.course_secret() == nc.DEFAULT_SECRET and not nc.secret_is_set()
    monkeypatch.setenv(nc.SECRET_ENV, "correct horse")
    assert nc.course_secret() == "correct horse" and nc.secret_is_set()
    assert nc.fingerprint() != nc.fingerprint(nc.DEFAULT_SECRET)
    assert "correct horse" not in nc.fingerprint() and len(nc.fingerprint()) == 64


def test_recipes_of_the_suspects_differ_only_in_their_letter():
    raw = json.loads(course_asset("manifest.json").read_text())["assets"]
    a, b = raw["lab3-suspect-a"], raw["lab3-suspect-b"]
    text_a = json.dumps(a, sort_keys=True).replace("suspect A", "suspect ?")
    text_b = json.dumps(b, sort_keys=True).replace("suspect B", "suspect ?")
    assert text_a.replace('"A"', '"?"') == text_b.replace('"B"', '"?"')
    for word in ("backdoored", "target", "trigger", "clean"):
        assert word not in json.dumps(a).lower().replace("neural_cleanse", "")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_CACHE", str(tmp_path))
    monkeypatch.setenv("LABSUPPORT_PROGRESS", "0")
    return tmp_path


def _load(name):
    return assets.load_asset(name, dataset="synthetic", profile="smoke", device="cpu")


def test_suspects_metadata_does_not_tell_them_apart(cache, monkeypatch):
    monkeypatch.delenv(nc.SECRET_ENV, raising=False)
    a, b = _load("lab3-suspect-a"), _load("lab3-suspect-b")
    meta_a, meta_b = dict(a.asset_meta), dict(b.asset_meta)
    assert meta_a["train_loss"] == [] == meta_b["train_loss"]
    assert meta_a["key_extra"] == meta_b["key_extra"] == nc.fingerprint()
    assert set(meta_a) == set(meta_b)
    for key in ("asset", "recipe_sha256", "training", "train_seconds", "test_accuracy",
                "sha256", "created"):
        meta_a.pop(key, None), meta_b.pop(key, None)
    assert meta_a == meta_b
    truth = nc.reveal(a, b, image_shape=(1, 28, 28))
    assert truth is not None and truth.backdoored == nc.plan().backdoored


def test_changing_the_secret_rebuilds_and_students_accept_prebuilt(cache, monkeypatch, capsys):
    monkeypatch.setenv(nc.SECRET_ENV, "instructor one")
    first = _load("lab3-suspect-a")
    capsys.readouterr()
    monkeypatch.setenv(nc.SECRET_ENV, "instructor two")
    second = _load("lab3-suspect-a")
    assert "another course secret" in capsys.readouterr().out
    assert second.asset_meta["key_extra"] == nc.fingerprint("instructor two")
    assert first.asset_meta["key_extra"] != second.asset_meta["key_extra"]
    monkeypatch.delenv(nc.SECRET_ENV)  # a student: no secret, the pre-built file is kept
    student = _load("lab3-suspect-a")
    assert "building" not in capsys.readouterr().out
    assert student.asset_meta["key_extra"] == nc.fingerprint("instructor two")
    assert nc.reveal(student, image_shape=(1, 28, 28)) is None  # the student cannot learn the answer from reveal


def test_reverse_engineer_finds_the_planted_trigger_inside_no_grad():
    model, x, y = fx.backdoor_fixture(target=1, n=48, seed=3, top=0, left=5)
    state = fx.model_state(model)
    settings = dict(epochs=60, batch_size=20, init_cost=0.05, patience=2,
                    attack_threshold=0.9, early_stop_patience=4)
    with torch.no_grad():
        norms = [nc.reverse_engineer(model, k, x, y, **settings)["norm"] for k in range(4)]
    assert int(np.argmin(norms)) == 1 and norms[1] < 0.3 * sorted(norms)[1]
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    for key, value in fx.model_state(model).items():
        assert torch.equal(value, state[key])
    assert nc.decide({"m": norms}, {"m": nc.anomaly_index(norms)}) in (("m", 1), (None, None))


def test_reverse_engineer_log_follows_the_schedule():
    model, x, y = fx.backdoor_fixture(target=2, n=40, seed=0)
    params = dict(init_cost=0.02, patience=2, cost_multiplier=1.5, attack_threshold=0.9,
                  early_stop_patience=3)
    found = nc.reverse_engineer(model, 2, x, y, epochs=50, batch_size=16, **params)
    replay = fx.replay_schedule(found["successes"], found["norms"], **params)
    assert found["costs"] == pytest.approx(replay["costs"])
    assert replay["stop"] in (len(found["costs"]), None)
    assert found["norm"] == pytest.approx(found["norms"][replay["best"]])
    assert float(found["mask"].sum()) == pytest.approx(found["norm"], rel=1e-5)
    with pytest.raises(ValueError, match="target"):
        nc.reverse_engineer(model, 0, x[y == 0], y[y == 0], epochs=1)


def test_anomaly_index_and_decide():
    np.testing.assert_allclose(nc.anomaly_index([10, 11, 12, 30, 2]),
                               np.array([1, 0, 1, 19, 9]) / 1.4826)
    degenerate = nc.anomaly_index([5, 5, 5, 1])
    assert degenerate[:3].tolist() == [0, 0, 0] and np.isposinf(degenerate[3])
    with pytest.raises(ValueError, match="non-empty"):
        nc.anomaly_index([])
    norms = {"A": [40.0, 42.0, 41.0, 39.0], "B": [38.0, 9.0, 40.0, 41.0]}
    indices = {k: nc.anomaly_index(v) for k, v in norms.items()}
    assert nc.decide(norms, indices) == ("B", 1)
    assert nc.decide({"A": norms["A"]}, {"A": indices["A"]}) == (None, None)


def test_fixture_spies_read_back_labels_and_stamps():
    model, x, y = fx.backdoor_fixture(target=0, n=12, seed=1)
    spy = fx.LabelSpy(model)
    copy = __import__("copy").deepcopy(spy).train()
    loss = torch.nn.functional.cross_entropy(copy(x[:5]), y[:5])
    loss.backward()
    seen = fx.training_inputs(copy)
    assert torch.equal(seen.labels, y[:5]) and seen.all_training and seen.batch_sizes == [5]
    stamped = 1 - x
    matches = fx.match_images(torch.cat([x[:2], stamped[3:4]]), x, stamped)
    assert matches.index.tolist() == [0, 1, 3] and matches.stamped.tolist() == [False, False, True]
    assert not spy.records
