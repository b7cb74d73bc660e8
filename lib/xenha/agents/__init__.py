"""The OCF resource agents: ``xen-guest`` (:mod:`.guest`) and ``xen-host`` (:mod:`.host`).

Thin: each maps Pacemaker's actions onto the layers below (admission, libvirt, pacemaker)
and their outcomes onto OCF exit codes. Declarations both agents share are in
:mod:`.parameters`.
"""
