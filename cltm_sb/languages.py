"""Language registry: Common Voice locale code -> English name and fine-grained family.

The built-in registry (``resources/languages.csv``) covers the 54 languages of the paper's figures
and other Common Voice locales, with the fine-grained families the paper uses
("Indo-European (Romance)", "Turkic", ...). Users with other locales (or the toy corpus's made-up
codes) pass their own ``code,name,family`` CSV.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

REGISTRY_COLUMNS = ("code", "name", "family")

# The paper's reduced 16-language heatmap view (Figure 5).
PAPER_SUBSET = (
    "ar", "en", "de", "ckb", "kmr", "fr", "ca", "es", "be", "ru", "uk", "eu", "zh-CN", "zh-TW", "ky", "tr",
)  # fmt: skip


@dataclass(frozen=True)
class Language:
    """One language: Common Voice code, English name, fine-grained family."""

    code: str
    name: str
    family: str


class UnknownLanguageError(ValueError):
    """Raised for locale codes that the registry does not know."""


class LanguageRegistry:
    """A read-only mapping of locale codes to :class:`Language` entries."""

    def __init__(self, languages: Iterable[Language], source: str = "<memory>") -> None:
        self._languages: dict[str, Language] = {}
        self.source = source
        for language in languages:
            if language.code in self._languages:
                raise ValueError(f"{source}: language code {language.code!r} is listed twice")
            self._languages[language.code] = language

    def __contains__(self, code: object) -> bool:
        return code in self._languages

    def __len__(self) -> int:
        return len(self._languages)

    def __iter__(self):
        return iter(self._languages.values())

    @property
    def codes(self) -> list[str]:
        """All known codes, in registry order."""
        return list(self._languages)

    def check(self, codes: Iterable[str]) -> None:
        """Raise an :class:`UnknownLanguageError` naming every code the registry lacks."""
        unknown = [c for c in codes if c not in self._languages]
        if unknown:
            raise UnknownLanguageError(
                f"unknown language code(s) {', '.join(unknown)} (registry: {self.source}); "
                "pass --families FILE.csv with columns code,name,family that lists them"
            )

    def get(self, code: str) -> Language:
        """The entry for ``code``; unknown codes raise :class:`UnknownLanguageError`."""
        self.check([code])
        return self._languages[code]

    def name(self, code: str) -> str:
        """English name of ``code``."""
        return self.get(code).name

    def family(self, code: str) -> str:
        """Fine-grained family of ``code``."""
        return self.get(code).family

    def families(self, codes: Sequence[str]) -> list[str]:
        """Families of ``codes``, in the same order."""
        self.check(codes)
        return [self._languages[c].family for c in codes]

    def order(self, codes: Iterable[str]) -> list[str]:
        """``codes`` sorted by family, then by English name (the heatmap order)."""
        codes = list(codes)
        self.check(codes)
        return sorted(codes, key=lambda c: (self._languages[c].family, self._languages[c].name, c))


def read_registry_csv(path: str | os.PathLike) -> LanguageRegistry:
    """Read a ``code,name,family`` CSV into a registry; problems name the file and row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: families file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = tuple(h.strip() for h in (reader.fieldnames or ()))
        if header[:3] != REGISTRY_COLUMNS:
            raise ValueError(
                f"{path}: header must start with {','.join(REGISTRY_COLUMNS)}, found {','.join(header) or 'nothing'}"
            )
        languages = []
        for line_number, row in enumerate(reader, start=2):
            values = [(row.get(c) or "").strip() for c in REGISTRY_COLUMNS]
            if not all(values):
                raise ValueError(f"{path}, line {line_number}: empty code, name or family")
            languages.append(Language(*values))
    return LanguageRegistry(languages, source=str(path))


def default_registry() -> LanguageRegistry:
    """The built-in registry shipped with the package."""
    resource = resources.files("cltm_sb").joinpath("resources/languages.csv")
    with resources.as_file(resource) as path:
        return read_registry_csv(path)


def load_registry(families_csv: str | os.PathLike | None = None) -> LanguageRegistry:
    """The user's registry if a CSV is given, else the built-in one."""
    return read_registry_csv(families_csv) if families_csv else default_registry()
