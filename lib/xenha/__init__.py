"""xenha: Pacemaker resource agents for Xen guests with capacity-checked live migration."""

__version__ = "0.1.0"
