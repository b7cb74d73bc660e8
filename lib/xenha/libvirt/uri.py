"""libvirt connection URIs: checked without connecting, masked before logging, derived for peers.

libvirt itself gives no useful error for an unknown scheme (``foo:///x`` falls through to
the remote driver and fails with "Failed to connect socket"), so the agents check the
scheme here, at validation time, and say which drivers they support.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SUPPORTED_DRIVERS = ("xen", "qemu", "test")
SUPPORTED_TRANSPORTS = ("unix", "ssh", "libssh", "libssh2", "tcp", "tls", "ext")
NODE_PLACEHOLDER = "%n"

# A query field is a secret when its key says so: auth_pass, client_secret, api_key, token...
# (keyfile, a path, is not: it helps to see it).
_QUERY_FIELD = re.compile(r"((?:^|[?&;])([^=&;?]*)=)([^&;]*)")
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "cred")


class UriError(ValueError):
    """A URI the agents cannot use; the message says what to write instead."""


class LibvirtUri(NamedTuple):
    text: str
    driver: str
    transport: str | None
    host: str
    path: str


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def parse(text: str, parameter: str = "hypervisor", placeholder: bool = False) -> LibvirtUri:
    """Check that ``text`` names a libvirt driver this suite supports.

    Plain string work, no urllib: this runs before every monitor.

    >>> parse("xen:///system").driver
    'xen'
    >>> parse("qemu+tcp://root@node2:16509/system").host
    'node2'
    """
    stripped = text.strip()
    if not stripped:
        raise UriError(f"{parameter} is empty: use a libvirt URI such as xen:///system")
    if any(ord(char) < 0x20 for char in stripped):
        raise UriError(f"{parameter} contains control characters")
    if NODE_PLACEHOLDER in stripped and not placeholder:
        raise UriError(f"{parameter}={mask(stripped)!r} contains %n, which only remoteuri and migrateuri replace")
    scheme, separator, rest = stripped.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        raise UriError(f"{parameter}={mask(stripped)!r} is not a libvirt URI: use one such as xen:///system")
    driver, _, transport = scheme.partition("+")
    if driver not in SUPPORTED_DRIVERS:
        raise UriError(
            f"{parameter}={mask(stripped)!r} uses the libvirt driver {driver!r}; "
            f"xenha supports {', '.join(SUPPORTED_DRIVERS)} (xen:///system on a Xen host)"
        )
    if transport and transport not in SUPPORTED_TRANSPORTS:
        raise UriError(
            f"{parameter}={mask(stripped)!r} uses the transport {transport!r}; "
            f"libvirt knows {', '.join(SUPPORTED_TRANSPORTS)}"
        )
    _userinfo, authority, slash, remainder = _split(rest)
    host = authority
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.partition(":")[0]
    path = "/" + remainder.partition("?")[0] if slash else ""
    return LibvirtUri(stripped, driver, transport or None, host, path)


def mask(text: str) -> str:
    """The URI with any password (user:password@ or a password-like query field) hidden.

    Plain string work, no urllib: URIs are masked on the migration's critical path.

    >>> mask("xen+ssh://root:s3cret@node2/system?keyfile=/k")
    'xen+ssh://root:***@node2/system?keyfile=/k'
    >>> mask("qemu+tcp://n/system?password=x&a=b")
    'qemu+tcp://n/system?password=***&a=b'
    >>> mask("qemu+tcp://admin:pa/ss@node2:16509/system?auth_pass=x;client_secret=y")
    'qemu+tcp://admin:***@node2:16509/system?auth_pass=***;client_secret=***'
    >>> mask("xen:///system")
    'xen:///system'
    """
    scheme, separator, rest = text.partition("://")
    if not separator:
        return _mask_query(text)
    userinfo, authority, slash, remainder = _split(rest)
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:***@{authority}" if colon else f"{userinfo}@{authority}"
    path, question, query = remainder.partition("?")
    return f"{scheme}{separator}{authority}{slash}{path}{question}{_mask_query(query) if question else ''}"


def scrub(text: str, uri: str) -> str:
    """``text`` (e.g. libvirt's error message, which may repeat the URI) with ``uri``'s secrets hidden.

    >>> scrub("Unable to parse URI qemu+tcp://a:pa/ss@h/system (pa/ss)", "qemu+tcp://a:pa/ss@h/system")
    'Unable to parse URI qemu+tcp://a:***@h/system (***)'
    """
    masked = mask(uri)
    if masked == uri:
        return text
    text = text.replace(uri, masked)
    for secret in _secrets(uri):
        text = text.replace(secret, "***")
    return text


def _secrets(uri: str) -> list[str]:
    """The values ``mask`` hides in ``uri``, longest first; values too short to search for are left out."""
    _scheme, _separator, rest = uri.partition("://")
    userinfo, _authority, _slash, remainder = _split(rest)
    found = [userinfo.partition(":")[2]] if userinfo is not None else []
    query = remainder.partition("?")[2] if rest else uri
    found += [field.group(3) for field in _QUERY_FIELD.finditer(query) if _is_secret(field.group(2))]
    return sorted((value for value in found if len(value) >= 3), key=len, reverse=True)


def _split(rest: str) -> tuple[str | None, str, str, str]:
    """The part of a URI after ``://`` as (userinfo or None, host[:port], "/" or "", the rest).

    The userinfo ends at the last ``@`` before the query, not at the first ``/``: a password
    may hold a raw ``/`` (libvirt's own parser takes it so).

    >>> _split("admin:pa/ss@node2:16509/system?x=1")
    ('admin:pa/ss', 'node2:16509', '/', 'system?x=1')
    >>> _split("/system")
    (None, '', '/', 'system')
    """
    at = rest.partition("?")[0].rfind("@")
    userinfo = rest[:at] if at >= 0 else None
    authority, slash, remainder = rest[at + 1 :].partition("/")
    return userinfo, authority, slash, remainder


def _mask_query(query: str) -> str:
    def hide(field: re.Match[str]) -> str:
        return field.group(1) + ("***" if _is_secret(field.group(2)) else field.group(3))

    return _QUERY_FIELD.sub(hide, query)


def _is_secret(key: str) -> bool:
    key = key.lower()
    return any(word in key for word in _SECRET_WORDS) or key == "key" or key.endswith(("_key", "-key", "apikey"))


def default_remote(hypervisor: LibvirtUri) -> str:
    """The URI of the same driver on another node, reached over ssh: ``xen+ssh://%n/system``.

    >>> default_remote(parse("xen:///system"))
    'xen+ssh://%n/system'
    """
    transport = hypervisor.transport if hypervisor.transport not in (None, "unix") else "ssh"
    path = hypervisor.path or "/system"
    return f"{hypervisor.driver}+{transport}://{NODE_PLACEHOLDER}{path}"


def for_node(template: str, node: str) -> str:
    """Fill in the ``%n`` placeholder with a node name (plus the network suffix, if any)."""
    return template.replace(NODE_PLACEHOLDER, node)


class MigrationTarget(NamedTuple):
    node: str  # the target node, as the cluster names it
    remote: str  # libvirt URI of the target's hypervisor
    data: str | None  # data channel (VIR_MIGRATE_PARAM_URI), None: let libvirt choose


def with_network_suffix(node: str, suffix: str) -> str:
    """The node's name on the migration network, as VirtualDomain forms it.

    The suffix goes after the first label, so FQDNs keep their domain.

    >>> with_network_suffix("node2.example.com", "-mig")
    'node2-mig.example.com'
    >>> with_network_suffix("node2", "")
    'node2'
    """
    if not suffix:
        return node
    first, dot, rest = node.partition(".")
    return f"{first}{suffix}{dot}{rest}"


def migration_target(hypervisor: LibvirtUri, remote_template: str | None, data_template: str | None, target: str,
                     suffix: str) -> MigrationTarget:  # fmt: skip
    """The target's control and data URIs, with ``%n`` replaced.

    ``remoteuri`` gets the node name as Pacemaker knows it; the derived default and
    ``migrateuri`` use the name on the migration network (with the suffix).

    >>> migration_target(parse("xen:///system"), None, None, "node2", "-mig")
    MigrationTarget(node='node2', remote='xen+ssh://node2-mig/system', data='tcp://node2-mig')
    >>> migration_target(parse("qemu:///system"), "qemu+tcp://%n/system", None, "node2", "")
    MigrationTarget(node='node2', remote='qemu+tcp://node2/system', data=None)
    """
    network_name = with_network_suffix(target, suffix)
    if remote_template:
        remote = for_node(remote_template, target)
    else:
        remote = for_node(default_remote(hypervisor), network_name)
    if data_template:
        data: str | None = for_node(data_template, network_name)
    elif suffix:
        data = f"tcp://{network_name}"
    else:
        data = None
    return MigrationTarget(target, remote, data)
