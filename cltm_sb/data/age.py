"""Age bands from Common Voice's ``age`` column, and the groups a subset is balanced over.

Common Voice asks speakers for a decade (``teens``, ``twenties``, ... ``nineties``). The age task
(``cltm_sb/resources/tasks/age.yaml``) uses three bands, coarse enough that every band has
speakers in most locales: under 30, 30-49, and 50 and over. A row without an age (or with a value
outside the list) is left out of an age preparation and counted, as a row without gender is.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Common Voice's age values and their band (``fourties`` is Common Voice's own spelling).
AGE_BANDS = {
    "teens": "under30", "twenties": "under30",
    "thirties": "30to49", "fourties": "30to49", "forties": "30to49",
    "fifties": "50plus", "sixties": "50plus", "seventies": "50plus", "eighties": "50plus",
    "nineties": "50plus",
}  # fmt: skip
#: The bands, sorted (the order labels are mapped in).
BANDS = tuple(sorted(set(AGE_BANDS.values())))
#: The manifest column of the band.
AGE_BAND_COLUMN = "age_band"


def age_band(value: str) -> str | None:
    """The band of a Common Voice age value; None for an empty or unknown one.

    Example:
        >>> age_band("fourties"), age_band(" Twenties "), age_band("")
        ('30to49', 'under30', None)
    """
    return AGE_BANDS.get(str(value).strip().lower())


def balance_values(keys: Sequence[str]) -> list[str]:
    """The groups of a subset balanced over ``keys`` (``gender``, ``age_band``), in draw order.

    One key: its values (``female``, ``male``; or the bands). Several: every combination,
    written ``value1/value2``.
    """
    from cltm_sb.data.manifests import GENDERS

    values = {"gender": list(GENDERS), AGE_BAND_COLUMN: list(BANDS)}
    groups = [""]
    for key in keys:
        groups = [f"{g}/{v}" if g else v for g in groups for v in values[key]]
    return groups
