"""Typed configuration: component dataclasses registered with Hydra, and conversion to objects.

A component's dataclass *is* its config. `register` stores it in Hydra's ConfigStore as
`schema/<group>/<name>`, which the YAML presets in `conf/<group>/` extend; `to_objects`
turns a composed tree into those dataclasses, reporting invalid values by their full key.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from xpretrieval.core.errors import ConfigError

T = TypeVar("T")


def config_dir() -> str:
    """conf/ inside an installed wheel, or beside the package in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "conf"
    return str(packaged if packaged.is_dir() else package.parent / "conf")


def register(group: str, name: str) -> Callable[[type[T]], type[T]]:
    """Store a component dataclass as Hydra schema `schema/<group>/<name>` (presets extend it)."""

    def store(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be registered")
        ConfigStore.instance().store(group=f"schema/{group}", name=name, node=cls)
        return cls

    return store


def register_package(package: str) -> None:
    """Import every module of `package`, so that each component in it registers itself by its
    decorator: a new loss, model or index is one new file, with no list to extend."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")


def register_root(name: str) -> Callable[[type[T]], type[T]]:
    """Store the root dataclass of a command's config under `name` (used by `conf/*.yaml`)."""

    def store(cls: type[T]) -> type[T]:
        ConfigStore.instance().store(name=name, node=cls)
        return cls

    return store


def to_objects(cfg: DictConfig) -> Any:
    """Build the dataclass objects of a composed config.

    Validation in `__post_init__` raises `ValueError("scale must be > 0, got -1")`; this wraps
    it as `ConfigError("loss.scale must be > 0, got -1")` by locating the node that fails; a
    mandatory value left unset (`???`) is named before anything is built.
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: no value given; set it as an override ({missing[0]}=...)"
        )
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        prefix = _failing_node_key(cfg)
        raise ConfigError(f"{prefix}{error}") from error


def _failing_node_key(node: DictConfig, prefix: str = "") -> str:
    """Key prefix (`losses.rank.`) of the deepest child node whose conversion fails."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            try:
                OmegaConf.to_object(child)
            except ValueError:
                return _failing_node_key(child, f"{prefix}{key}.")
    return prefix


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested dict under dotted keys (`{"model": {"pooling": "cls"}}` ->
    `{"model.pooling": "cls"}`); an empty dict adds no key."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
