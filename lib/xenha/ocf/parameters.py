"""Declarative OCF parameters and their typed parsing from ``OCF_RESKEY_*``.

A parameter is declared once; the declaration produces its meta-data, its parsing and
the error an operator sees for a bad value. A bad value is a configuration error
(``OCF_ERR_CONFIGURED``) whose reason names the parameter, the value and what is expected.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Union

from xenha.booleans import FALSE_WORDS, TRUE_WORDS
from xenha.ocf.codes import OcfError, OcfExit

PACEMAKER_OWN = frozenset({"crm_feature_set"})


class ParamType(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    SELECT = "select"
    DECIMAL = "decimal"  # not an OCF type: advertised as a string, parsed as a number

    @property
    def ocf_type(self) -> str:
        return "string" if self is ParamType.DECIMAL else self.value


ParamValue = Union[str, int, float, bool, None]


class Parameter(NamedTuple):
    name: str
    shortdesc: str
    longdesc: str
    type: ParamType = ParamType.STRING
    default: str | None = None
    required: bool = False
    unique: bool = False
    reloadable: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""

    def check(self) -> None:
        """Refuse an inconsistent declaration (called once per spec, by the tests too)."""
        if self.type is ParamType.SELECT and not self.choices:
            raise ValueError(f"select parameter {self.name} declares no choices")
        if self.default is not None:
            self.parse(self.default)

    def parse(self, raw: str | None) -> ParamValue:
        """The typed value of ``raw`` (the default when absent); raises OcfError when invalid."""
        text = self.default if raw is None else raw
        if text is None or (self.required and not text.strip()):
            if self.required:
                raise self._error(f"parameter {self.name} is required: {self.shortdesc.rstrip('.')}")
            return None
        if self.type is ParamType.STRING:
            return text
        stripped = text.strip()
        if self.type is ParamType.BOOLEAN:
            return self._parse_boolean(text, stripped)
        if self.type is ParamType.SELECT:
            return self._parse_choice(text, stripped)
        if self.type is ParamType.DECIMAL:
            return self._parse_decimal(text, stripped)
        return self._parse_integer(text, stripped)

    def _parse_boolean(self, text: str, stripped: str) -> bool:
        word = stripped.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise self._error(f"{self._shown(text)} is not a boolean: use true or false")

    def _parse_choice(self, text: str, stripped: str) -> str:
        if stripped in self.choices:
            return stripped
        raise self._error(f"{self._shown(text)} is not one of: {', '.join(self.choices)}")

    def _parse_decimal(self, text: str, stripped: str) -> float:
        allowed = set("0123456789.")
        if not stripped or not set(stripped) <= allowed or stripped.count(".") > 1 or stripped == ".":
            raise self._error(f"{self._shown(text)} is not a decimal number{self._unit_phrase()}, such as 1.5")
        value = float(stripped)
        self._check_bounds(text, value)
        if value <= 0 and (self.minimum is None or self.minimum > 0):
            raise self._error(f"{self._shown(text)} must be greater than 0")
        return value

    def _parse_integer(self, text: str, stripped: str) -> int:
        digits = stripped[1:] if stripped[:1] in ("-", "+") else stripped
        if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
            raise self._error(f"{self._shown(text)} is not a whole number{self._unit_phrase()}")
        value = int(stripped)
        self._check_bounds(text, value)
        return value

    def _check_bounds(self, text: str, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise self._error(f"{self._shown(text)} is below the minimum of {self.minimum}{self._unit_phrase()}")
        if self.maximum is not None and value > self.maximum:
            raise self._error(f"{self._shown(text)} is above the maximum of {self.maximum}{self._unit_phrase()}")

    def _unit_phrase(self) -> str:
        return f" ({self.unit})" if self.unit else ""

    def _shown(self, text: str) -> str:
        shown = text if len(text) <= 60 else text[:57] + "..."
        return f"parameter {self.name}={shown!r}"

    def _error(self, reason: str) -> OcfError:
        return OcfError(OcfExit.ERR_CONFIGURED, reason)


class ParameterValues:
    """The parameters one action was given, parsed on demand against their declarations."""

    def __init__(self, declared: Iterable[Parameter], given: Mapping[str, str]) -> None:
        self._declared = {parameter.name: parameter for parameter in declared}
        self._given = dict(given)

    def _value(self, name: str) -> ParamValue:
        return self._declared[name].parse(self._given.get(name))

    def string(self, name: str) -> str | None:
        value = self._value(name)
        assert value is None or isinstance(value, str)
        return value

    def integer(self, name: str) -> int | None:
        value = self._value(name)
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
        return value

    def decimal(self, name: str) -> float | None:
        value = self._value(name)
        assert value is None or isinstance(value, float)
        return value

    def boolean(self, name: str) -> bool:
        value = self._value(name)
        return bool(value)

    def choice(self, name: str) -> str:
        value = self._value(name)
        assert isinstance(value, str)
        return value

    def problems(self) -> list[OcfError]:
        """Every invalid or missing parameter, not just the first."""
        found: list[OcfError] = []
        for name in self._declared:
            try:
                self._value(name)
            except OcfError as error:
                found.append(error)
        return found

    def unknown(self) -> list[str]:
        """Parameters given that the agent does not declare (usually a typo).

        Pacemaker adds ``crm_feature_set`` to every action's parameters: not a typo.
        """
        return sorted(name for name in self._given if name not in self._declared and name not in PACEMAKER_OWN)
