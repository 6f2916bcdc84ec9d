"""The lab's namespaces, links and routes (see :mod:`probe.lab.addresses` for the plan).

Namespaces are named ``<prefix>-<role>`` with roles ``client``, ``r1``, ``censor``, ``r3``
and ``inet``. :func:`build` is idempotent (a half-built lab is torn down first) and
:func:`destroy` removes every namespace, process and ``/etc/netns`` directory of the lab,
whatever state it is in.
"""

from __future__ import annotations

from probe.lab import addresses as A
from probe.lab.netns import (
    NETNS_ETC,
    add_namespace,
    add_veth,
    delete_namespace,
    list_namespaces,
    sh,
    sysctl,
)

ROLES = ("client", "r1", "censor", "r3", "inet")
ROUTERS = ("r1", "censor", "r3")

# (role a, interface a, address a, role b, interface b, address b); all /24.
LINKS = (
    ("client", "eth0", A.CLIENT, "r1", "down0", A.R1_CLIENT_SIDE),
    ("r1", "up0", A.R1_UP, "censor", "down0", A.CENSOR_DOWN),
    ("censor", "up0", A.CENSOR_UP, "r3", "down0", A.R3_DOWN),
    ("r3", "up0", A.R3_UP, "inet", "down0", A.INET_DOWN),
)

# Routes beyond the connected /24s. No default route anywhere: nothing leaves the lab.
ROUTES = {
    "client": [("198.18.0.0/15", A.R1_CLIENT_SIDE)],
    "r1": [("198.18.0.0/15", A.CENSOR_DOWN)],
    "censor": [("198.18.1.0/24", A.R1_UP), ("198.18.4.0/24", A.R3_DOWN),
               (A.SERVER_NET, A.R3_DOWN)],
    "r3": [("198.18.1.0/24", A.CENSOR_UP), ("198.18.2.0/24", A.CENSOR_UP),
           (A.SERVER_NET, A.INET_DOWN)],
    "inet": [("198.18.0.0/16", A.R3_UP)],
}

NS_SYSCTLS = {
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


def ns_names(prefix: str) -> dict[str, str]:
    return {role: f"{prefix}-{role}" for role in ROLES}


def build(prefix: str, server_addresses: list[str]) -> dict[str, str]:
    """Create the namespaces, links, addresses and routes; return role -> namespace."""
    names = ns_names(prefix)
    if any(name in list_namespaces() for name in names.values()):
        destroy(prefix)
    for ns in names.values():
        add_namespace(ns)
        sysctl(ns, NS_SYSCTLS)
    for role in ROUTERS:
        sysctl(names[role], {"net.ipv4.ip_forward": "1"})
    for role_a, if_a, addr_a, role_b, if_b, addr_b in LINKS:
        add_veth(names[role_a], if_a, names[role_b], if_b)
        sh(["ip", "-n", names[role_a], "addr", "add", f"{addr_a}/24", "dev", if_a])
        sh(["ip", "-n", names[role_b], "addr", "add", f"{addr_b}/24", "dev", if_b])
    inet = names["inet"]
    # No dummy driver in this kernel: server addresses sit on the inet namespace's lo.
    batch = "".join(f"address add {addr}/32 dev lo\n"
                    for addr in sorted(set(server_addresses) | set(A.INFRA_ADDRESSES)))
    sh(["ip", "-n", inet, "-batch", "-"], input_text=batch)
    for role, routes in ROUTES.items():
        for prefix_net, via in routes:
            sh(["ip", "-n", names[role], "route", "add", prefix_net, "via", via])
    return names


def destroy(prefix: str) -> None:
    """Remove every namespace of the lab (and their processes, ``/etc/netns`` dirs)."""
    for ns in ns_names(prefix).values():
        delete_namespace(ns)
    # Also leftovers of a role list from an older version, with this lab's prefix.
    for ns in list_namespaces():
        if ns.startswith(f"{prefix}-"):
            delete_namespace(ns)
    if NETNS_ETC.exists():
        for path in NETNS_ETC.glob(f"{prefix}-*"):
            delete_namespace(path.name)


def leftovers(prefix: str) -> list[str]:
    """Anything of this lab still present (namespaces, /etc/netns dirs); empty when clean."""
    found = [f"namespace {ns}" for ns in list_namespaces() if ns.startswith(f"{prefix}-")]
    if NETNS_ETC.exists():
        found += [f"directory {p}" for p in NETNS_ETC.glob(f"{prefix}-*")]
    return found
