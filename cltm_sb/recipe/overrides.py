"""Override values (``cltm plan --override key=value``, the recipe's ``--key=value``), typed once.

Both command lines read their values here, the way hyperpyyaml reads the hparams files (YAML 1.2,
ruamel): ``1e-4``, ``1E-4``, ``1.0e+10``, ``.5``, ``5.`` and ``-3`` are numbers. PyYAML (YAML 1.1)
kept ``1e-4`` a string, which every run then refused with a TypeError. An override is a plain
value: a tag (``!new:``, ``!ref``, ``!!python/...``) is refused with the key named.
"""

from __future__ import annotations

import os
from typing import Any

from cltm_sb.recipe import RecipeError

_CORE = "tag:yaml.org,2002:"
#: Tags a plain value resolves to; a timestamp (``2024-01-01``) is kept as the text it was.
PLAIN_TAGS = frozenset(f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))
_TEXT_TAGS = frozenset({f"{_CORE}str", f"{_CORE}timestamp"})


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True)


def _compose(text: str, where: str) -> tuple[Any, Any]:
    """The YAML instance and the node tree of ``text``; a syntax error names ``where``."""
    from ruamel.yaml import YAMLError

    yaml = _yaml()
    try:
        return yaml, yaml.compose(text)
    except YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError(f"{where}: not a YAML value ({problem}); quote it or fix its syntax") from None


def _typed(yaml: Any, key: str, node: Any) -> Any:
    """The plain value of ``node``; a tag anywhere in it is refused and names ``key``."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if node is None:
        return None
    tag = str(node.tag)
    if tag in _TEXT_TAGS:
        return str(node.value)
    if tag not in PLAIN_TAGS:
        shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
        raise RecipeError(
            f"override {key}: the YAML tag {shown} is not allowed; an override is a plain value "
            "(number, string, true/false, null or a list); to build objects, write them in a YAML "
            "file of your own (e.g. a preset given by path)"
        )
    if isinstance(node, SequenceNode):
        return [_typed(yaml, key, item) for item in node.value]
    if isinstance(node, MappingNode):
        return {str(_typed(yaml, key, k)): _typed(yaml, key, v) for k, v in node.value}
    return yaml.constructor.construct_object(node, deep=True)


def parse_override(key: str, text: str) -> Any:
    """The value of one ``--override key=value``, typed as the hparams files are read.

    Example:
        >>> parse_override("lr", "1e-4"), parse_override("batch_size", "-3")
        (0.0001, -3)
        >>> parse_override("train_csv", "[a.csv, b.csv]")
        ['a.csv', 'b.csv']
    """
    yaml, node = _compose(text, f"override {key}={text}")
    return _typed(yaml, key, node)


def parse_override_text(text: str) -> dict[str, Any]:
    """The overrides of the recipe command line: the ``key: value`` lines of ``sb.parse_arguments``.

    Example:
        >>> parse_override_text("lr: 1E-4\\nprecision: bf16")
        {'lr': 0.0001, 'precision': 'bf16'}
    """
    from ruamel.yaml.nodes import MappingNode

    yaml, node = _compose(text, "command line overrides")
    if node is None:
        return {}
    if not isinstance(node, MappingNode):
        raise RecipeError(f"command line overrides {text!r}: expected --key=value arguments")
    return {str(k.value): _typed(yaml, str(k.value), v) for k, v in node.value}


def as_path_list(value: Any) -> list[str]:
    """A manifest override (``train_csv``, ``test_csv``, ``trials_csv``) as a list of paths: one
    path, a list of paths, or None (no paths)."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]
