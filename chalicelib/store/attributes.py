"""PynamoDB attributes for money. Cents are DynamoDB numbers holding Python ``int`` only."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import Attribute
from pynamodb.constants import MAP, NUMBER


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"cents must be int, got {type(value).__name__}")
    return value


class CentsAttribute(Attribute[int]):
    """Integer cents. Refuses floats and bools so money never becomes binary floating point."""

    attr_type = NUMBER

    def serialize(self, value: int) -> str:
        return str(_int(value))

    def deserialize(self, value: str) -> int:
        return int(value)


class CentsTableAttribute(Attribute[dict[str, dict[str, int]]]):
    """A map of maps of integer cents, e.g. balance parts ``{"fac|prv|pat": {"open": 1200}}``."""

    attr_type = MAP

    def serialize(self, value: dict[str, dict[str, int]]) -> dict[str, Any]:
        return {
            row: {"M": {field: {"N": str(_int(c))} for field, c in cols.items()}}
            for row, cols in value.items()
        }

    def deserialize(self, value: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            row: {field: int(c["N"]) for field, c in cols["M"].items()}
            for row, cols in value.items()
        }


class CentsMapAttribute(Attribute[dict[str, int]]):
    """A flat map of integer cents, e.g. patient responsibility by kind."""

    attr_type = MAP

    def serialize(self, value: dict[str, int]) -> dict[str, Any]:
        return {k: {"N": str(_int(c))} for k, c in value.items()}

    def deserialize(self, value: dict[str, Any]) -> dict[str, int]:
        return {k: int(c["N"]) for k, c in value.items()}
