"""The libvirt layer: the only package that calls libvirt.

* :mod:`.connection` — one connection to a host's libvirtd (:class:`~.connection.Hypervisor`);
* :mod:`.domain` — one domain on it (:class:`~.domain.Domain`): every domain call, each under
  the action's deadline;
* :mod:`.drivers` — what a libvirt driver cannot do (the libxl driver cannot abort a job...),
  as data callers ask for;
* :mod:`.errors` — libvirt errors classified into kinds a caller can act on;
* :mod:`.uri`, :mod:`.domxml`, :mod:`.states`, :mod:`.owner` — URIs, the guest's domain XML,
  what a domain state means, and the suite's owner metadata inside each domain.

This file imports nothing, so that importing one module of the package costs only that
module (the monitor path is counted in milliseconds: docs/decisions/performance.md).
"""
