"""Pacemaker's spelling of booleans, shared by OCF parameters, the agents' environment and the
planner's reading of the CIB (crm_is_true accepts the same words)."""

TRUE_WORDS = frozenset({"1", "yes", "true", "on", "y"})
FALSE_WORDS = frozenset({"0", "no", "false", "off", "n"})


def is_true(text: str | None) -> bool:
    """True for Pacemaker's true words, in any case and with spaces around; False otherwise.

    >>> is_true(" Yes"), is_true("1"), is_true("off"), is_true(None), is_true("maybe")
    (True, True, False, False, False)
    """
    return (text or "").strip().lower() in TRUE_WORDS
