"""What the test fence agent did, read back from its logs on every node. Pure parsing.

``fence_xenha_test`` appends ``<unix time> <fencing node> <action> <target> <result...>``
to /var/log/pacemaker/fence_xenha_test.log of the node that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FenceRecord:
    wall_time: float
    fencer: str
    action: str
    target: str
    result: str

    @property
    def succeeded(self) -> bool:
        return self.result.startswith("ok")


def parse_fence_log(text: str) -> list[FenceRecord]:
    """
    >>> record, = parse_fence_log("1795826079.441694 node1 reboot node3 ok: off\\n")
    >>> record.fencer, record.action, record.target, record.succeeded
    ('node1', 'reboot', 'node3', True)
    """
    records = []
    for line in text.splitlines():
        fields = line.split(" ", 4)
        if len(fields) == 5:
            records.append(FenceRecord(float(fields[0]), fields[1], fields[2], fields[3], fields[4]))
    return records
