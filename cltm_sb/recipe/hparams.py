"""Hyperparameter composition: a task YAML, the encoder and the preset it runs with.

A task YAML (``hparams/gender.yaml``, ``hparams/speaker.yaml``) is complete: it loads on its own
with ``load_hyperpyyaml`` (give its ``!PLACEHOLDER`` keys as overrides). Three keys name where
parts of it come from::

    recipe: gender        # finds the preset's per-recipe part (toy.gender.yaml), whatever the
                          # YAML's own file name
    encoder: mhubert147   # hparams/encoders/<name>.yaml, or a path to a YAML file
    preset: paper         # hparams/presets/<name>.yaml (+ <name>.<recipe>.yaml), or a path

The rule (:func:`compose_hparams`), with hyperpyyaml's override semantics:

- An encoder or preset chosen in the overrides (``--preset=toy``) that differs from the one the
  YAML names replaces it: the keys the named one's files define are taken out of the YAML, and
  the chosen files' keys are put in. Command-line key overrides (``--lr=1e-4``) come last.
- An encoder or preset the YAML names itself fills the keys the YAML lacks; a key the YAML sets
  to another value than the file wins (your edit) and is reported once in the log.

So a copied or renamed task YAML keeps working (``--preset=toy`` finds ``toy.gender.yaml`` by
``recipe: gender``), an edited value in it is honoured, and a minimal YAML that holds only what
differs from its encoder and preset works too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from cltm_sb.io import yaml_syntax_error
from cltm_sb.recipe import RecipeError

logger = logging.getLogger(__name__)

#: Marks where each file starts in the composed YAML text (:func:`key_origins` reads it).
FROM_MARK = "# ---- from "
#: The keys that choose a component, with the folder of their packaged files.
COMPONENT_KINDS = (("encoder", "encoders"), ("preset", "presets"))


def hparams_dir() -> Path:
    """Folder of the packaged YAML files (``cltm_sb/hparams``)."""
    return Path(__file__).resolve().parent.parent / "hparams"


def available(kind: str) -> list[str]:
    """Names of the packaged encoders (``kind="encoders"``) or presets (``"presets"``)."""
    return sorted(p.stem for p in (hparams_dir() / kind).glob("*.yaml") if "." not in p.stem)


def recipe_part(component: Path, recipe: str | None) -> Path | None:
    """The optional per-recipe part of a preset: ``<preset>.<recipe>.yaml`` beside it.

    A preset holds what every recipe shares; what one recipe needs on its own (the toy preset's
    epochs and batch size differ between gender and speaker ID) lives in the part named after
    the recipe, e.g. ``toy.speaker.yaml``, composed whenever ``toy`` is.
    """
    if not recipe:
        return None
    part = component.with_name(f"{component.stem}.{recipe}{component.suffix}")
    return part if part.is_file() else None


def resolve_component(kind: str, value: str | os.PathLike) -> Path:
    """Path of an encoder or preset YAML given by packaged name or by path."""
    value = str(value)
    path = Path(value).expanduser()
    if value.endswith((".yaml", ".yml")) or os.sep in value:
        if not path.is_file():
            raise RecipeError(f"{kind[:-1]} YAML {value!r} not found")
        return path
    packaged = hparams_dir() / kind / f"{value}.yaml"
    if not packaged.is_file():
        raise RecipeError(
            f"unknown {kind[:-1]} {value!r}; valid: {', '.join(available(kind))}, "
            "or a path to a YAML file"
        )
    return packaged


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")


def _top_level(text: str) -> dict:
    return dict(_yaml().load(text) or {})


def file_top_level(path: str | os.PathLike, text: str | None = None) -> dict:
    """The top-level keys of one YAML file; a syntax error names the file and the line.

    Each file is read on its own before composition: in the composed text the line of an error
    would point into the concatenation, not into the user's file.
    """
    from ruamel.yaml import YAMLError

    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = _yaml().load(text) or {}
    except YAMLError as error:
        raise RecipeError(f"{yaml_syntax_error(path, error)}; fix the file") from None
    if not isinstance(data, Mapping):
        raise RecipeError(f"{path}: expected a mapping of keys (key: value lines), got a {type(data).__name__}")
    return dict(data)


def component_files(kind: str, value: Any, recipe: str | None) -> list[Path]:
    """The files an encoder (one) or a preset (itself and its per-recipe part) is made of."""
    if value is None:
        return []
    path = resolve_component(kind, value)
    part = recipe_part(path, recipe) if kind == "presets" else None
    return [path] if part is None else [path, part]


def _without(text: str, keys: set[str]) -> str:
    """``text`` without the top-level ``keys`` (comments and tags of the rest kept)."""
    if not keys:
        return text
    yaml = _yaml()
    data = yaml.load(text)
    for key in keys:
        data.pop(key, None)
    if not data:
        return ""
    buffer = StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def _equal(a: Any, b: Any) -> bool:
    return _plain_yaml(a) == _plain_yaml(b)


def compose_hparams(
    hparams_file: str | os.PathLike, overrides: Mapping[str, Any], recipe: str | None = None
) -> str:
    """The task YAML with its encoder and preset composed in (the rule is in the module docstring).

    ``recipe`` (the task's recipe, e.g. ``gender``) finds the preset's per-recipe part when the
    YAML has no ``recipe`` key; a YAML that names another recipe raises. A YAML without
    ``encoder``/``preset`` keys is returned as it is.
    """
    hparams_file = Path(hparams_file)
    text = hparams_file.read_text(encoding="utf-8")
    top = file_top_level(hparams_file, text)
    if "encoder" not in top and "preset" not in top:
        return text
    declared = top.get("recipe")
    if declared is not None and recipe is not None and str(declared) != recipe:
        raise RecipeError(
            f"{hparams_file}: recipe: {declared}, but it is run by the {recipe} recipe; "
            f"use a {recipe} YAML or set recipe: {recipe}"
        )
    recipe = str(declared) if declared is not None else recipe
    dropped: set[str] = set()
    parts: list[tuple[str, str, set[str]]] = []
    for key, kind in COMPONENT_KINDS:
        named = top.get(key)
        chosen = overrides.get(key, named)
        if chosen is None:
            raise RecipeError(f"{hparams_file}: set {key!r} (valid: {', '.join(available(kind))})")
        replacing = key in overrides and str(chosen) != str(named)
        if replacing:  # the named component's keys leave with it (e.g. mhubert's encoder_revision)
            for path in component_files(kind, named, recipe):
                dropped |= set(file_top_level(path))
        for path in component_files(kind, chosen, recipe):
            part = path.read_text(encoding="utf-8")
            keys = file_top_level(path, part)
            if replacing:  # and the chosen one's keys replace the YAML's
                dropped |= set(keys)
            if not replacing:  # the YAML's own values win; an edited one is said once
                edited = sorted(k for k in keys if k in top and not _equal(top[k], keys[k]))
                if edited:
                    logger.info("%s sets %s itself (not as in %s)", hparams_file, ", ".join(edited), path)
                part = _without(part, set(keys) & set(top))
                keys = {k: v for k, v in keys.items() if k not in top}
            parts.append((str(path), part, set(keys)))
    head = _without(text, dropped - {"encoder", "preset", "recipe"})
    parts.insert(0, (str(hparams_file), head, set(top) - dropped | ({"encoder", "preset", "recipe"} & set(top))))
    seen: dict[str, str] = {}
    for name, _, keys in parts:
        for key in keys:
            if key in seen and name != str(hparams_file):
                raise RecipeError(f"key {key!r} is defined in both {seen[key]} and {name}")
            seen.setdefault(key, name)
    return "\n".join(f"{FROM_MARK}{name}\n{part}" for name, part, _ in parts)


def _plain_yaml(node: Any) -> Any:
    """ruamel round-trip nodes to plain data; tagged nodes become ``{"tag": ..., "value": ...}``."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, Mapping):
        value: Any = {str(k): _plain_yaml(v) for k, v in node.items()}
    elif isinstance(node, (list, tuple)):
        value = [_plain_yaml(v) for v in node]
    elif isinstance(node, bool) or node is None:
        value = node if node is None else bool(node)
    elif isinstance(node, (int, float, str)):
        value = _scalar(node)
    else:  # a tagged scalar such as !PLACEHOLDER
        value = str(getattr(node, "value", node))
    if tag and tag.startswith("!") and not tag.startswith("!!"):
        return {"tag": tag, "value": value}
    return value


def _scalar(node: int | float | str) -> int | float | str:
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return str(node)


def plain_defaults(text: str) -> dict:
    """The top-level values of a (composed) YAML text as plain data, before any resolution."""
    return _plain_yaml(_yaml().load(text) or {})


def resolve_plain(text: str, overrides: Mapping[str, Any]) -> dict:
    """The configuration after overrides and ``!ref`` resolution, as plain data (no objects).

    Unknown override keys raise and list the valid ones.
    """
    from hyperpyyaml import resolve_references

    top = _top_level(text)
    keys = set(top)
    unknown = sorted(set(overrides) - keys)
    if unknown:
        raise RecipeError(
            f"unknown hparams override(s) {unknown}; valid keys: {', '.join(sorted(keys))}"
        )
    # hyperpyyaml would say "must be replaced", and only for a placeholder something refers to.
    unset = sorted(
        key for key, node in top.items()
        if getattr(getattr(node, "tag", None), "value", None) == "!PLACEHOLDER" and key not in overrides
    )
    if unset:
        raise RecipeError(f"{', '.join(unset)}: no value (!PLACEHOLDER in the YAML); give each as an override key=value")
    resolved = resolve_references(text, dict(overrides)).getvalue()
    return _plain_yaml(_yaml().load(resolved))


def resolved_text(text: str, overrides: Mapping[str, Any]) -> str:
    """The composed YAML with overrides and references resolved (what ``hyperparams.yaml`` holds)."""
    from hyperpyyaml import resolve_references

    return resolve_references(text, dict(overrides)).getvalue()


def key_origins(text: str, default: str | os.PathLike) -> dict[str, str]:
    """The file each top-level key of a composed text comes from (``default`` before any mark)."""
    data = _yaml().load(text) or {}
    marks = [
        (number, line[len(FROM_MARK):])
        for number, line in enumerate(text.splitlines())
        if line.startswith(FROM_MARK)
    ]
    return {
        str(key): next((name for start, name in reversed(marks) if start <= data.lc.key(key)[0]), str(default))
        for key in data
    }
