"""The lab's address plan: every address lives in 198.18.0.0/15 (RFC 2544 benchmarking).

Path from the client (hop numbers as a traceroute from the client counts them)::

    client 198.18.1.2 -- r1 (hop 1, 198.18.1.1) -- r2 CENSOR (hop 2, 198.18.2.2)
        -- r3 (hop 3, 198.18.3.2) -- inet (the fake internet, 198.18.4.2; servers in 198.19/16)

Server addresses sit on ``lo`` in the ``inet`` namespace: lab infrastructure in
198.19.0.0/24 (resolver, reflector), then one /24 per service of the targets files, one
address per host name (:func:`HostPlan.assign`). No namespace has a default route: every
route names a 198.18.0.0/15 prefix, so nothing can leave the lab.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
SERVER_NET = "198.19.0.0/16"

CLIENT = "198.18.1.2"
R1_CLIENT_SIDE = "198.18.1.1"
R1_UP = "198.18.2.1"
CENSOR_DOWN = "198.18.2.2"   # the censor's address as the client's traceroute sees it
CENSOR_UP = "198.18.3.1"
R3_DOWN = "198.18.3.2"
R3_UP = "198.18.4.1"
INET_DOWN = "198.18.4.2"

CENSOR_HOP = 2  # counted from the client, 1 = first router (DESIGN.md "Locate")
ROUTER_HOPS = {1: R1_CLIENT_SIDE, 2: CENSOR_DOWN, 3: R3_DOWN}

RESOLVER = "198.19.0.53"        # dnsmasq, the client's resolver
SERVFAIL_UPSTREAM = "198.19.0.54"  # answers SERVFAIL; dnsmasq forwards names to it
REFLECTOR = "198.19.0.7"        # voip-probe reflector (when available)
ECHO = "198.19.0.8"             # lab echo host: STUN Binding answers + UDP echo, every port
ECHO_PORTS = frozenset({443, 3478, 3479, 3480, 3481, 4244, 5242, 5243, 7985, 7987, 19302})
DOH = "198.19.0.11"             # DNS over HTTPS from the truthful zone (the control resolver)
DOH_HOST = "doh.lab.example"
DOH_URL = f"https://{DOH_HOST}/dns-query"
SPARE = "198.19.0.9"            # coturn's relay address
INFRA_ADDRESSES = (RESOLVER, SERVFAIL_UPSTREAM, REFLECTOR, ECHO, DOH, SPARE)

BOGON_ANSWER = "10.10.34.35"    # classic injected bogon; unroutable inside the lab
INJECTED_ANSWER = "198.18.200.200"  # in the lab, but nobody answers there


def in_lab(address: str) -> bool:
    return ipaddress.ip_address(address) in LAB_NET


@dataclass
class HostPlan:
    """Host name -> lab address, one /24 per service (``198.19.<10+i>.0/24``)."""

    addresses: dict[str, str] = field(default_factory=dict)
    service_nets: dict[str, str] = field(default_factory=dict)
    _next_host: dict[str, int] = field(default_factory=dict)

    def service_net(self, service: str) -> str:
        if service not in self.service_nets:
            index = len(self.service_nets) + 10
            if index > 250:
                raise ValueError("too many services for the lab address plan")
            self.service_nets[service] = f"198.19.{index}.0/24"
            self._next_host[service] = 10
        return self.service_nets[service]

    def assign(self, service: str, host: str) -> str:
        """The lab address of ``host`` (allocated in ``service``'s /24 on first use)."""
        host = host.lower().rstrip(".")
        if host in self.addresses:
            return self.addresses[host]
        net = self.service_net(service)
        index = self._next_host[service]
        if index > 254:
            raise ValueError(f"too many hosts in service {service} for the lab address plan")
        self._next_host[service] = index + 1
        address = net.replace(".0/24", f".{index}")
        self.addresses[host] = address
        return address

    def all_addresses(self) -> list[str]:
        return sorted(set(self.addresses.values()), key=ipaddress.ip_address)
