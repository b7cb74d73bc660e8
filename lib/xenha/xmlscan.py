"""Small XML answers (the CIB manager's, libvirt's metadata) read with expat.

These documents come from Pacemaker and libvirt, are a few elements long, and are read on
paths where every millisecond counts (a migration's overhead): expat, a C parser, costs
nothing to import, unlike ElementTree or lxml. Entities are not expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple


class Element(NamedTuple):
    path: tuple[str, ...]  # tags from the document's root to this element
    attributes: dict[str, str]

    @property
    def tag(self) -> str:
        return self.path[-1]


class XmlScanError(ValueError):
    pass


def scan(text: str) -> list[Element]:
    """Every element of ``text`` in document order.

    >>> [element.path for element in scan("<a><b x='1'/><c/></a>")]
    [('a',), ('a', 'b'), ('a', 'c')]
    >>> scan("  ")
    []
    """
    if not text.strip():
        return []
    from xml.parsers import expat  # noqa: PLC0415 - only when there is XML to read (performance.md)

    parser = expat.ParserCreate()
    found: list[Element] = []
    stack: list[str] = []

    def start(tag: str, attributes: dict[str, str]) -> None:
        stack.append(tag)
        found.append(Element(tuple(stack), attributes))

    def end(_tag: str) -> None:
        stack.pop()

    def no_entities(*_arguments: object) -> None:
        raise XmlScanError("entity declarations are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = no_entities
    try:
        parser.Parse(text, True)
    except expat.ExpatError as error:
        raise XmlScanError(str(error)) from error
    return found


def elements(text: str, tag: str) -> Iterator[Element]:
    return (element for element in scan(text) if element.tag == tag)
