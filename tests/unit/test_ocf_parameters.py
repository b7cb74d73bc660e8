"""Typed parsing of OCF parameters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenha.ocf import OcfError, OcfExit, Parameter, ParameterValues, ParamType

TIMEOUT = Parameter("timeout", "Seconds.", "Seconds.", type=ParamType.INTEGER, minimum=0, maximum=3600, unit="s")
FLAG = Parameter("flag", "A flag.", "A flag.", type=ParamType.BOOLEAN, default="false")
MODE = Parameter("mode", "Mode.", "Mode.", type=ParamType.SELECT, choices=("live", "refuse"), default="refuse")
NAME = Parameter("name", "The name.", "The name.", required=True)


@pytest.mark.parametrize(("raw", "value"), [("0", 0), (" 42 ", 42), ("+7", 7), ("3600", 3600)])
def test_integers(raw: str, value: int) -> None:
    assert TIMEOUT.parse(raw) == value


@pytest.mark.parametrize("raw", ["", "x", "1.5", "1e3", "٣", "-1", "3601", "0x10", "9" * 30])
def test_bad_integers_are_configuration_errors(raw: str) -> None:
    with pytest.raises(OcfError) as caught:
        TIMEOUT.parse(raw)
    assert caught.value.code == OcfExit.ERR_CONFIGURED
    assert "timeout=" in caught.value.reason


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("YES", True), ("1", True), ("off", False), ("n", False)])
def test_booleans(raw: str, value: bool) -> None:
    assert FLAG.parse(raw) is value


def test_defaults_apply_when_absent() -> None:
    assert FLAG.parse(None) is False
    assert MODE.parse(None) == "refuse"
    assert TIMEOUT.parse(None) is None


def test_select_lists_the_choices() -> None:
    with pytest.raises(OcfError, match="is not one of: live, refuse"):
        MODE.parse("sometimes")


def test_required() -> None:
    for raw in (None, "", "   "):
        with pytest.raises(OcfError, match="parameter name is required: The name"):
            NAME.parse(raw)


def test_declaration_with_a_bad_default_is_refused() -> None:
    with pytest.raises(OcfError):
        Parameter("x", "X.", "X.", type=ParamType.INTEGER, default="many").check()
    with pytest.raises(ValueError, match="no choices"):
        Parameter("y", "Y.", "Y.", type=ParamType.SELECT).check()


def test_the_agents_declarations_are_consistent() -> None:
    from xenha.agents.guest.spec import SPEC as GUEST
    from xenha.agents.host import SPEC as HOST

    for spec in (GUEST, HOST):
        assert spec.check() is spec
        assert len({parameter.name for parameter in spec.parameters}) == len(spec.parameters)


def test_values_collect_every_problem() -> None:
    values = ParameterValues((TIMEOUT, FLAG, MODE, NAME), {"timeout": "x", "flag": "maybe", "extra": "1"})
    problems = values.problems()
    assert [problem.reason.split("=")[0].split()[-1] for problem in problems] == ["timeout", "flag", "name"]
    assert values.unknown() == ["extra"]


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(OcfError) as caught:
        TIMEOUT.parse("x" * 500)
    assert len(caught.value.reason) < 150


@given(st.text())
def test_any_text_parses_or_raises_a_configuration_error(raw: str) -> None:
    for parameter in (TIMEOUT, FLAG, MODE, NAME):
        try:
            parameter.parse(raw)
        except OcfError as error:
            assert error.code == OcfExit.ERR_CONFIGURED
