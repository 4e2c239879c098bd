"""Language registry: Common Voice locale code -> English name and fine-grained family.

The built-in registry (``resources/languages.csv``) covers the 54 languages of the paper's figures
and other Common Voice locales, with the fine-grained families the paper uses
("Indo-European (Romance)", "Turkic", ...). Users with other locales (or the toy corpus's made-up
codes) pass their own ``code,name,family`` CSV. :func:`code_mapper` maps ISO 639-1, ISO 639-3
and Common Voice codes to Common Voice codes (``resources/language_codes.csv``) for other
studies' matrices; an ambiguous code (``zh``) needs the user's ``--map``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

    def __init__(self, languages: Iterable[Language], source: str = "<memory>", builtin: bool = False) -> None:
        self._languages: dict[str, Language] = {}
        self.source = source
        self.builtin = builtin  # the package's own registry, not a user's families file
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
        unknown = list(dict.fromkeys(c for c in codes if c not in self._languages))  # each named once
        if unknown:
            # A user's families file is the registry already: the fix is in that file.
            fix = (
                f"add them to {self.source} (columns code,name,family)"
                if Path(self.source).is_file() and not self.builtin
                else "pass --families FILE.csv with columns code,name,family that lists them"
            )
            lower = {code.lower(): code for code in self._languages}
            other_case = [f"{c} as {lower[c.lower()]}" for c in unknown if c.lower() in lower]
            if other_case:
                fix += f"; the registry spells {', '.join(other_case)}: codes must match in case"
            raise UnknownLanguageError(
                f"unknown language code(s) {', '.join(unknown)} (registry: {self.source}); {fix}"
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
    # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(h.strip() for h in (reader.fieldnames or ()))
        reader.fieldnames = list(header)  # rows keyed as the header reads, spaces after commas or not
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
        registry = read_registry_csv(path)
    registry.builtin = True
    return registry


def load_registry(families_csv: str | os.PathLike | None = None) -> LanguageRegistry:
    """The user's registry if a CSV is given, else the built-in one."""
    return read_registry_csv(families_csv) if families_csv else default_registry()


# --------------------------------------------------------------------------------------------
# Code mapping: ISO 639-1, ISO 639-3 and Common Voice codes (other studies' matrices)

CODE_TABLE_COLUMNS = ("cv", "iso639_1", "iso639_3")


class AmbiguousCodeError(ValueError):
    """Raised for a code that stands for several Common Voice locales (e.g. ``zh``)."""


def parse_code_map(items: Iterable[str] | None) -> dict[str, str]:
    """``--map`` values (``zh=zh-CN``, or several comma-separated) as a dict; bad items raise."""
    mapping: dict[str, str] = {}
    for item in items or ():
        for part in item.split(","):
            if not part.strip():
                continue
            code, sep, target = part.partition("=")
            if not sep or not code.strip() or not target.strip():
                raise ValueError(f"--map {part!r}: expected CODE=CV_CODE, e.g. --map zh=zh-CN")
            mapping[code.strip()] = target.strip()
    return mapping


@dataclass(frozen=True)
class CodeMapper:
    """Maps ISO 639-1, ISO 639-3 and Common Voice codes to one Common Voice code.

    Attributes:
        aliases: lower-case ISO code -> the Common Voice locales it can stand for.
        cv_codes: lower-case Common Voice code -> its spelling.
        overrides: the user's choices (``--map zh=zh-CN``), applied first.
    """

    aliases: Mapping[str, tuple[str, ...]]
    cv_codes: Mapping[str, str]
    overrides: Mapping[str, str] = field(default_factory=dict)

    def to_cv(self, code: str, known: Container[str] = (), where: str = "") -> str:
        """The Common Voice code of ``code``.

        Order: the user's ``--map``; a code ``known`` (e.g. to a ``--families`` registry) or a
        Common Voice code stays as it is; an ISO 639-1/639-3 code that stands for one locale
        becomes it, one that stands for several is an :class:`AmbiguousCodeError` naming the fix;
        any other code stays as it is (a registry check names it later).
        """
        code = code.strip()
        if code in self.overrides:
            return self.overrides[code]
        if code in known:
            return code
        if code.lower() in self.cv_codes:
            return self.cv_codes[code.lower()]
        candidates = self.aliases.get(code.lower(), ())
        if len(candidates) > 1:
            raise AmbiguousCodeError(
                f"language code {code!r}{where} is ambiguous: it stands for the Common Voice "
                f"locales {', '.join(candidates)}; pass --map {code}={candidates[0]} (or the one "
                "your data are)"
            )
        return candidates[0] if candidates else code

    def map_codes(self, codes: Sequence[str], known: Container[str] = (), where: str = "") -> list[str]:
        """:meth:`to_cv` of each code; two codes that become one locale are an error."""
        mapped = [self.to_cv(c, known, where) for c in codes]
        seen: dict[str, str] = {}
        for original, cv in zip(codes, mapped):
            if cv in seen and seen[cv] != original:
                raise ValueError(
                    f"language codes {seen[cv]!r} and {original!r}{where} both mean {cv!r}; "
                    f"keep one, or pass --map {original}=CODE to tell them apart"
                )
            seen[cv] = original
        return mapped


def read_code_table(path: str | os.PathLike) -> CodeMapper:
    """Read a ``cv,iso639_1,iso639_3`` CSV (several ISO 639-3 codes space-separated)."""
    path = Path(path)
    aliases: dict[str, list[str]] = {}
    cv_codes: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ())[:3] != CODE_TABLE_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(CODE_TABLE_COLUMNS)}")
        for row in reader:
            cv = row["cv"].strip()
            cv_codes[cv.lower()] = cv
            for alias in [row["iso639_1"].strip(), *row["iso639_3"].split()]:
                if alias:
                    aliases.setdefault(alias.lower(), []).append(cv)
    # An ISO code that is itself a Common Voice code (ca, en, ...) means that locale.
    return CodeMapper({a: tuple(c) for a, c in aliases.items()}, cv_codes)


def code_mapper(overrides: Mapping[str, str] | None = None) -> CodeMapper:
    """The built-in code table (``resources/language_codes.csv``) with the user's ``--map``."""
    resource = resources.files("cltm_sb").joinpath("resources/language_codes.csv")
    with resources.as_file(resource) as path:
        table = read_code_table(path)
    return CodeMapper(table.aliases, table.cv_codes, dict(overrides or {}))
