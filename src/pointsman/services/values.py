"""User-attribute values: the one normalisation every writer applies.

Values compare exactly (case-sensitive) after trimming; Number values are
kept in canonical form so that ``1``, ``1.0`` and ``01`` are one value.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from pointsman.errors import ValidationFailed

MAX_VALUE_LENGTH = 512


# Numbers whose canonical form would be longer than a value may be are refused.
MAX_EXPONENT = MAX_VALUE_LENGTH - 12


# What a Number value may be written as: ASCII digits (Decimal would also
# take ``1_000`` and other scripts' digits), a point, an exponent.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ExactNumber(float):
    """A JSON number with a fraction or an exponent, with the text it was
    written as (the float is only its nearest value): ``1.50`` for a String
    attribute stays ``1.50``, ``1.0000000000000001`` is not ``1``."""

    text: str

    def __new__(cls, text: str) -> ExactNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


def canonical_number(text: str) -> str | None:
    """The one spelling of a number (``1``, ``1.0`` and ``01`` give ``1``),
    or None for anything that is not a finite number of sensible size."""
    if _NUMBER.fullmatch(text) is None:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number.adjusted()) > MAX_EXPONENT:
        return None
    if number == 0:
        return "0"
    with localcontext() as exact:
        exact.prec = 2 * MAX_VALUE_LENGTH  # never round a value to another
        if number == number.to_integral_value():
            return format(number.to_integral_value(), "f")
        return format(number.normalize(), "f")


def split_list(raw: Any, field: str) -> list[str]:
    """A CSV string or a JSON array, trimmed, empties dropped, duplicates
    collapsed in first-seen order."""
    if raw is None:
        return []
    if isinstance(raw, str):
        items: list[Any] = raw.split(",")
    elif isinstance(raw, list):
        items = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        items = [raw]
    else:
        raise ValidationFailed(field, "Expected a string or an array")
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValidationFailed(field, "Expected a string or an array of strings")
        text = (item.text if isinstance(item, ExactNumber) else str(item)).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def normalise(values: list[str], attribute_type: str | None, field: str) -> list[str]:
    """Trimmed values in the attribute's canonical form, duplicates collapsed."""
    result: dict[str, None] = {}
    for value in values:
        text = value.strip()
        if len(text) > MAX_VALUE_LENGTH:
            raise ValidationFailed(
                field, f"Values must be at most {MAX_VALUE_LENGTH} characters"
            )
        if attribute_type == "Number":
            number = canonical_number(text)
            if number is None:
                raise ValidationFailed(field, f'"{text}" is not a number')
            if len(number) > MAX_VALUE_LENGTH:
                raise ValidationFailed(
                    field,
                    f"Values must be at most {MAX_VALUE_LENGTH} characters"
                    " written out in full",
                )
            text = number
        if text:
            result.setdefault(text, None)
    return list(result)
