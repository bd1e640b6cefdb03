"""Pre-trained models the labs hand out: recipes, built on demand, cached, verified.

No lab ships weights. Each model a lab hands to students is an *asset* whose recipe lives in
``assets/manifest.json``: the architecture and its config, the training procedure (a small
registry, :data:`PROCEDURES`: ``standard``, ``gaussian_noise``, ...) with its
hyper-parameters and seed, and per-profile sizes (training images, epochs), so the
autograder's ``smoke`` assets build in seconds and ``full`` ones reproduce the assignment.

:func:`load_asset` returns the trained model. It looks in the user cache first
(``cache_dir()/assets/<dataset>/<profile>/<name>.pt``, written by
:func:`labsupport.models.save_model` with the sha256 of the weights); a file whose checksum
fails, that cannot be read, or that was built from another version of the recipe is rebuilt,
with one notice. A missing asset is built from its recipe (progress bar), written atomically.
Builds are reproducible: the same recipe and seed give the same weights on the same device.

Instructors pre-build every asset (on a GPU when present) with ``labsupport assets build
--all --dataset cifar4 --profile full``, i.e. :func:`build_assets`, and distribute the cache:
copy the folder ``<cache>/assets`` into each student's cache (``~/.cache/labsupport/assets``),
or put it on a shared drive and have students set ``LABSUPPORT_CACHE`` to the folder that
holds ``assets/``. A copied file is accepted when its checksum and recipe match.

Later labs add assets by adding recipes to the manifest and, when they need a new way of
training, a function registered with :func:`register_procedure`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import (
    CourseData,
    DatasetError,
    cache_dir,
    load_course_data,
    sha256_file,
    synthetic_fingerprint,
)
from .digits import digits_name, load_digits
from .models import CorruptModelFile, build_model, load_model, save_model
from .paths import course_asset
from .runtime import Timer, get_device, resolve_profile
from .train import History, evaluate, train_standard

MANIFEST_ENV = "LABSUPPORT_MANIFEST"
#: The manifest: the checkout's ``assets/manifest.json``, or its copy installed with the package.
DEFAULT_MANIFEST = course_asset("manifest.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AssetError(RuntimeError):
    """An asset is unknown, its recipe is malformed, or it can be neither loaded nor built."""


# --------------------------------------------------------------------------------------
# Training procedures: a small registry


#: A training procedure trains ``model`` in place on ``(x, y)`` and returns its History.
#: It receives the recipe's ``training`` parameters (minus ``procedure``), the epochs of the
#: chosen profile, the recipe's seed, optional evaluation data and a progress-bar label.
TrainingProcedure = Callable[..., History]
PROCEDURES: dict[str, TrainingProcedure] = {}
#: Procedures whose weights depend on a value outside the recipe (Lab 3's course secret):
#: procedure name -> a function returning ``(fingerprint, explicit)``, a hash of that value
#: and whether it was set explicitly. The fingerprint is saved with the weights
#: (``key_extra``); a cached file with another fingerprint is rebuilt when the value is
#: explicit (an instructor changed it) and accepted when it is not (a student loading the
#: instructor's pre-built models without knowing the value).
KEY_EXTRAS: dict[str, Callable[[], tuple[str, bool]]] = {}


def register_procedure(name: str, *, key_extra: Callable[[], tuple[str, bool]] | None = None
                       ) -> Callable[[TrainingProcedure], TrainingProcedure]:
    """Register a training procedure under ``name`` (the recipe's ``training.procedure``).

    The function is called as ``fn(model, x, y, *, params, epochs, seed, eval_data, desc)``
    and must be deterministic given ``seed`` (draw randomness from seeded generators).
    ``key_extra``: see :data:`KEY_EXTRAS`.
    """

    def decorate(fn: TrainingProcedure) -> TrainingProcedure:
        PROCEDURES[name] = fn
        if key_extra is not None:
            KEY_EXTRAS[name] = key_extra
        return fn

    return decorate


def _param(params: dict[str, Any], key: str, default: Any = ...) -> Any:
    if key in params:
        return params[key]
    if default is ...:
        raise AssetError(f"the recipe's training section lacks {key!r}.")
    return default


def _sgd_settings(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_size": int(_param(params, "batch_size", 128)),
        "lr": float(_param(params, "lr", 0.05)),
        "momentum": float(_param(params, "momentum", 0.9)),
        "weight_decay": float(_param(params, "weight_decay", 5e-4)),
    }


@register_procedure("standard")
def train_plain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params: dict[str, Any],
                epochs: int, seed: int,
                eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                desc: str = "train") -> History:
    """Standard training: SGD with a one-cycle schedule on clean images."""
    return train_standard(model, x, y, epochs=epochs, seed=seed, eval_data=eval_data,
                          desc=desc, **_sgd_settings(params))


@register_procedure("gaussian_noise")
def train_gaussian_noise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         params: dict[str, Any], epochs: int, seed: int,
                         eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                         desc: str = "train") -> History:
    """Gaussian data augmentation (Cohen et al. 2019, Sec. 4): every training image gets
    fresh isotropic noise ``N(0, sigma^2 I)`` (``params["sigma"]``), not clipped to [0, 1],
    exactly the noise the smoothed classifier samples at test time."""
    sigma = float(_param(params, "sigma"))
    if sigma < 0:
        raise AssetError(f"gaussian_noise needs sigma >= 0; got {sigma}.")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)

    def augment(batch: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(batch.shape, generator=generator, device=batch.device)
        return batch + sigma * noise

    return train_standard(model, x, y, epochs=epochs, seed=seed, augment=augment,
                          eval_data=eval_data, desc=desc, **_sgd_settings(params))


# --------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    """One asset's recipe, as read from the manifest (defaults merged in)."""

    name: str
    spec: dict[str, Any]

    @property
    def description(self) -> str:
        return str(self.spec.get("description", ""))

    @property
    def architecture(self) -> str:
        return str(self.spec.get("architecture", "SimpleCNN"))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.spec.get("config", {}))

    @property
    def data(self) -> str:
        """The dataset family the recipe trains on: ``"course"`` (the course dataset,
        :func:`~labsupport.data.load_course_data`) or ``"digits"``
        (:func:`~labsupport.digits.load_digits`)."""
        return str(self.spec.get("data", "course"))

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.spec["training"])

    @property
    def seed(self) -> int:
        return int(self.training.get("seed", 0))

    def sizes(self, profile: str) -> dict[str, Any]:
        """The profile's sizes: ``train_images`` (None = all), ``epochs``, ``eval_images``,
        optionally ``batch_size`` (overrides the training's)."""
        profiles = self.spec.get("profiles", {})
        if profile not in profiles:
            raise AssetError(f"Asset {self.name!r} has no sizes for profile {profile!r}; its "
                             f"recipe defines {sorted(profiles)}.")
        return dict(profiles[profile])

    def digest(self, profile: str) -> str:
        """sha256 of what determines the weights: everything but prose and other profiles."""
        relevant = {k: v for k, v in self.spec.items()
                    if k not in ("description", "labs", "profiles")}
        relevant["sizes"] = self.sizes(profile)
        text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def manifest_path() -> Path:
    """The manifest in use: ``$LABSUPPORT_MANIFEST`` or the checkout's ``assets/manifest.json``."""
    return Path(os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST).expanduser()


def _merge(defaults: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


@lru_cache(maxsize=8)
def _read_manifest(path: str, stamp: tuple[int, int]) -> dict[str, Recipe]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AssetError(f"No asset manifest at {path}. Run from the course checkout, or set "
                         f"{MANIFEST_ENV} to the path of assets/manifest.json.") from None
    except json.JSONDecodeError as error:
        raise AssetError(f"The asset manifest {path} is not valid JSON: {error}.") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("assets"), dict):
        raise AssetError(f"The asset manifest {path} must be an object with an 'assets' map.")
    defaults = raw.get("defaults", {})
    recipes = {}
    for name, spec in raw["assets"].items():
        if not _NAME.match(name):
            raise AssetError(f"Asset name {name!r} in {path} must be a plain file stem.")
        merged = _merge(defaults, spec)
        training = merged.get("training")
        if not isinstance(training, dict) or "procedure" not in training:
            raise AssetError(f"Asset {name!r} in {path} needs a 'training' object with a "
                             "'procedure'.")
        recipes[name] = Recipe(name, merged)
    return recipes


def recipes() -> dict[str, Recipe]:
    """Every recipe of the manifest, by asset name."""
    path = manifest_path()
    stat = path.stat() if path.exists() else None
    return _read_manifest(str(path), (stat.st_mtime_ns, stat.st_size) if stat else (0, 0))


def list_assets() -> list[str]:
    """The names of all assets in the manifest."""
    return sorted(recipes())


def get_recipe(name: str) -> Recipe:
    """The recipe of asset ``name``; a clear :class:`AssetError` for an unknown name."""
    known = recipes()
    if name not in known:
        raise AssetError(f"Unknown asset {name!r}. Known assets: {', '.join(sorted(known))} "
                         f"(defined in {manifest_path()}).")
    return known[name]


# --------------------------------------------------------------------------------------
# Datasets and cache paths


def _dataset_key(name: str) -> str:
    """A folder name for a dataset: its name, or for an npz path its stem and checksum."""
    if name in ("cifar4", "synthetic", "mnist", "digits"):
        return name
    path = Path(name).expanduser()
    if path.is_file():
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
        return f"{stem}-{sha256_file(path)[:12]}"
    raise AssetError(f"Cannot key the cache by dataset {name!r}: use 'cifar4', 'synthetic', "
                     "'auto' or the path of an existing dataset-full.npz.")


def _resolve_dataset(dataset: str | os.PathLike[str] | CourseData, family: str = "course"
                     ) -> tuple[str, Callable[[], CourseData]]:
    """``(cache key, loader)`` for a dataset argument; ``auto`` is resolved by loading.

    For the ``digits`` family, a course dataset name means its digits counterpart
    (``cifar4`` -> ``mnist``, ``synthetic`` -> ``digits``), so one ``--dataset`` builds
    every asset."""
    if isinstance(dataset, CourseData):
        return _dataset_key(dataset.name), lambda: dataset
    if family == "digits":
        name = digits_name(dataset)
        if name == "auto":
            data = load_digits("auto")
            return _dataset_key(data.name), lambda: data
        return _dataset_key(name), lambda: load_digits(name)
    if family != "course":
        raise AssetError(f"Unknown dataset family {family!r} (the recipe's 'data'); use "
                         "'course' or 'digits'.")
    name = os.fspath(dataset)
    if name == "auto":
        data = load_course_data("auto")
        return _dataset_key(data.name), lambda: data
    return _dataset_key(name), lambda: load_course_data(name)


def _data_version(dataset_key: str) -> str | None:
    """The version of a generated dataset (None for real data, which never changes): models
    cached from an older synthetic generator must not be used."""
    return synthetic_fingerprint() if dataset_key == "synthetic" else None


def asset_path(name: str, *, dataset: str | os.PathLike[str] | CourseData = "auto",
               profile: str = "auto") -> Path:
    """Where asset ``name`` built on ``dataset`` at ``profile`` is cached."""
    key, _ = _resolve_dataset(dataset, get_recipe(name).data)
    return cache_dir() / "assets" / key / resolve_profile(profile) / f"{name}.pt"


# --------------------------------------------------------------------------------------
# Building and loading


def _notice(message: str) -> None:
    """One line on stdout (never stderr: nbgrader zeroes test cells that write there)."""
    print(f"[labsupport] {message}", flush=True)


def _build(recipe: Recipe, data: CourseData, *, dataset_key: str, profile: str,
           device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Train the asset from its recipe; returns the model and the metadata to save."""
    training = recipe.training
    procedure_name = training.pop("procedure")
    procedure = PROCEDURES.get(procedure_name)
    if procedure is None:
        raise AssetError(f"unknown training procedure {procedure_name!r}; registered: "
                         f"{', '.join(sorted(PROCEDURES))}.")
    training.pop("seed", None)
    sizes = recipe.sizes(profile)
    if "batch_size" in sizes:  # tiny profiles need small batches for enough steps
        training["batch_size"] = sizes["batch_size"]
    epochs = int(sizes.get("epochs", 1))
    n_train = sizes.get("train_images")
    n_eval = sizes.get("eval_images")
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    x_eval, y_eval = data.x_test[:n_eval], data.y_test[:n_eval]
    _notice(f"building asset {recipe.name!r} ({recipe.description or procedure_name}): "
            f"{len(x)} {data.name} images x {epochs} epochs on {device.type}, profile {profile}")
    config = recipe.config
    config.setdefault("num_classes", data.num_classes)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), Timer(device) as timer:
        torch.manual_seed(recipe.seed)  # weight initialisation
        model = build_model(recipe.architecture, **config).to(device)
        history = procedure(model, x, y, params=training, epochs=epochs, seed=recipe.seed,
                            eval_data=None, desc=recipe.name)
    model.eval()
    accuracy = evaluate(model, x_eval, y_eval) if len(x_eval) else float("nan")
    _notice(f"built {recipe.name!r} in {timer.seconds:.1f} s; clean test accuracy "
            f"{accuracy:.3f} on {len(x_eval)} images")
    meta = {
        "asset": recipe.name,
        "recipe_sha256": recipe.digest(profile),
        "profile": profile,
        "dataset_key": dataset_key,
        "data_version": _data_version(dataset_key),
        "training": recipe.spec["training"],
        "sizes": sizes,
        "train_images": len(x),
        "train_seconds": round(timer.seconds, 3),
        "train_loss": history.loss,
        "test_accuracy": accuracy,
        "test_images": len(x_eval),
        "built_on": device.type,
        "torch": str(torch.__version__),
    }
    if procedure_name in KEY_EXTRAS:
        meta["key_extra"] = KEY_EXTRAS[procedure_name]()[0]
    return model, meta


def _load_cached(path: Path, recipe: Recipe, profile: str, device: torch.device,
                 dataset_key: str) -> tuple[nn.Module, dict[str, Any]] | None:
    """The cached model if its checksum and recipe match; None (after a notice) if not."""
    if not path.exists():
        return None
    try:
        model, meta = load_model(path, map_location=device)
    except CorruptModelFile as error:
        reason = ("its weights do not match their recorded sha256" if "does not match" in
                  str(error) else "the file is unreadable or truncated")
        _notice(f"the cached asset {path} is corrupt ({reason}); rebuilding it.")
        return None
    except Exception as error:  # e.g. a state dict that no longer fits the architecture
        _notice(f"the cached asset {path} cannot be loaded ({type(error).__name__}); "
                "rebuilding it.")
        return None
    if meta.get("recipe_sha256") != recipe.digest(profile):
        _notice(f"the cached asset {path} was built from another version of its recipe; "
                "rebuilding it.")
        return None
    if meta.get("data_version") != _data_version(dataset_key):
        _notice(f"the cached asset {path} was trained on another version of the "
                f"{dataset_key} dataset; rebuilding it.")
        return None
    key_extra = KEY_EXTRAS.get(str(recipe.training.get("procedure")))
    if key_extra is not None:
        value, explicit = key_extra()
        if explicit and meta.get("key_extra") != value:
            _notice(f"the cached asset {path} was built with another course secret; "
                    "rebuilding it.")
            return None
    return model, meta


def _device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return get_device(device)


def load_asset(name: str, *, dataset: str | os.PathLike[str] | CourseData = "auto",
               profile: str = "auto", device: str | torch.device | None = None) -> nn.Module:
    """The trained model ``name``, in eval mode on ``device`` (default: the lab's device).

    Args:
        name: an asset of the manifest (:func:`list_assets`).
        dataset: ``"cifar4"``, ``"synthetic"``, a dataset-full.npz path, ``"auto"``, or a
            loaded :class:`~labsupport.data.CourseData` (avoids loading it again).
        profile: ``"smoke"``, ``"cpu"``, ``"full"`` or ``"auto"`` (see
            :func:`labsupport.runtime.resolve_profile`); chooses the recipe's sizes.
        device: where the model goes (and where it is trained if it must be built).

    The model comes from the cache when its checksum and recipe match; otherwise it is built
    from the recipe and cached atomically. ``model.asset_meta`` holds its metadata (recipe,
    training time, clean test accuracy, ...). Raises :class:`AssetError` when the asset is
    unknown or can be neither loaded nor built.
    """
    recipe = get_recipe(name)
    device = _device(device)
    profile = resolve_profile(profile, device)
    recipe.sizes(profile)  # a clear error for a profile the recipe lacks
    key, loader = _resolve_dataset(dataset, recipe.data)
    path = cache_dir() / "assets" / key / profile / f"{name}.pt"
    cached = _load_cached(path, recipe, profile, device, key)
    if cached is not None:
        model, meta = cached
    else:
        try:
            data = loader()
            model, meta = _build(recipe, data, dataset_key=key, profile=profile, device=device)
        except (AssetError, DatasetError, KeyError, ValueError, TypeError) as error:
            raise AssetError(
                f"Asset {name!r} is not in the cache ({path}) and could not be built from its "
                f"recipe: {error} Build it where its dataset is available (`labsupport assets "
                f"build {name} --dataset {key} --profile {profile}`) and copy the cache, or set "
                "LABSUPPORT_CACHE to a folder holding a pre-built cache (see labsupport.assets)."
            ) from error
        try:
            meta = save_model(model, path, dataset=key, seed=recipe.seed, **meta)
        except OSError as error:  # a read-only shared cache: keep the model, say so
            _notice(f"could not write the asset cache {path} ({error}); the model is built "
                    "but will be rebuilt next time.")
    model.asset_meta = meta
    return model.to(device).eval()


def build_assets(names: Sequence[str] | None = None, *,
                 dataset: str | os.PathLike[str] | CourseData = "auto", profile: str = "auto",
                 device: str | torch.device | None = None,
                 force: bool = False) -> dict[str, Path]:
    """Build (or verify) assets into the cache; ``names=None`` means every asset.

    What ``labsupport assets build [--all]`` runs. Assets already cached with a valid
    checksum and the current recipe are kept unless ``force``. Returns each asset's cache path.
    """
    selected = list_assets() if names is None else list(names)
    for name in selected:
        get_recipe(name)  # fail before building anything
    device = _device(device)
    resolved: dict[str, tuple[str, Any]] = {}  # dataset family -> (cache key, dataset)
    paths = {}
    for name in selected:
        family = get_recipe(name).data
        if family not in resolved:
            key, loader = _resolve_dataset(dataset, family)
            auto = isinstance(dataset, str) and dataset == "auto"
            resolved[family] = (key, loader() if auto else dataset)  # resolve auto once
        key, family_dataset = resolved[family]
        path = cache_dir() / "assets" / key / resolve_profile(profile, device) / f"{name}.pt"
        if force:
            path.unlink(missing_ok=True)
        load_asset(name, dataset=family_dataset, profile=profile, device=device)
        paths[name] = path
    return paths


# --------------------------------------------------------------------------------------
# Procedures of the labs' own modules

from . import neural_cleanse as _neural_cleanse  # noqa: E402 (registers after the registry)

register_procedure("neural_cleanse_suspect",
                   key_extra=_neural_cleanse._cache_key)(_neural_cleanse._procedure)
from . import pruning as _pruning  # noqa: E402,F401 (registers badnets, badnets_pruning_aware)
