"""nDPI 5 through ctypes: a flow classifier fed IP packets one by one.

The ``nfstream`` wheel (PyPI) ships nDPI 5.0 statically linked into ``_lib_engine.abi3.so``,
which exports nDPI's C API. This module calls it the way nDPI's own ``ndpiReader`` does
(nDPI ``src/include/ndpi_api.h``):

* one detection module per :class:`Engine`: ``ndpi_init_detection_module(NULL)`` then
  ``ndpi_finalize_initialization`` (every protocol enabled, default configuration, so the
  engine keeps its STUN cache, its port guesses and its other real-world behaviours);
* one zeroed ``struct ndpi_flow_struct`` (``ndpi_detection_get_sizeof_ndpi_flow_struct()``
  bytes) per flow, both directions fed into the same struct (nDPI tells the directions
  apart itself from the addresses of the flow's first packet);
* ``ndpi_detection_process_packet(module, flow, ip_packet, length, time_ms, NULL)`` per
  packet, returning an ``ndpi_protocol`` by value: its first two ``u16`` are the master and
  the application protocol ids; ``ndpi_get_proto_name`` names them;
* ``ndpi_detection_giveup`` for flows nDPI never decided (its guess, mostly by port);
* ``ndpi_free_flow_data`` when a flow is forgotten, ``ndpi_exit_detection_module`` at the end.

The ``ndpi_protocol`` layout (56 bytes in nDPI 5.0) is taken from the C definitions the same
wheel was built with (``_lib_engine.ffi.typeof('ndpi_protocol')``), and the library's
revision is checked at load time: another major version is refused with a clear error
instead of being misread. A label is ``master.app`` as nDPI prints it (``STUN.WhatsAppCall``),
or one name when nDPI found only one (``STUN``, ``Unknown``).

Only IPv4 is handled (the lab runs without IPv6); a packet that is not IPv4 UDP/TCP, or a
non-first fragment, is not classified (:meth:`Classifier.feed` returns ``None``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import ipaddress
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Self

SUPPORTED_MAJOR = "5"
# nDPI's enum ndpi_classification_state (nDPI 5.0).
STATES = {0: "inspecting", 1: "partial", 2: "monitoring", 3: "classified"}
# nDPI stops looking at a flow once it reaches one of these.
FINAL_STATES = frozenset({"monitoring", "classified"})
UDP, TCP = 17, 6


class _Closing:
    """``with`` closes it: the nDPI module and flow structures are C memory."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NdpiUnavailable(RuntimeError):
    """nDPI cannot be loaded here (the message says why and what to install)."""


class _MasterApp(ctypes.Structure):
    _fields_ = [("master", ctypes.c_uint16), ("app", ctypes.c_uint16)]


class _Protocol(ctypes.Structure):
    """``ndpi_protocol`` of nDPI 5.0: proto (master, app), protocol_stack (u16[8] + count),
    protocol_by_ip, category, breed, fpc (master, app, confidence), custom userdata,
    classification state. Returned by value (in memory: it is larger than 16 bytes)."""

    _fields_ = [
        ("proto", _MasterApp),
        ("stack", ctypes.c_uint16 * 8),
        ("stack_len", ctypes.c_uint16),
        ("protocol_by_ip", ctypes.c_uint16),
        ("category", ctypes.c_int),
        ("breed", ctypes.c_int),
        ("fpc", _MasterApp),
        ("fpc_confidence", ctypes.c_int),
        ("custom_category_userdata", ctypes.c_void_p),
        ("state", ctypes.c_int),
    ]


assert ctypes.sizeof(_Protocol) == 56, "ndpi_protocol of nDPI 5.0 is 56 bytes"


def library_path() -> Path:
    """Where the nfstream wheel put nDPI (``_lib_engine.abi3.so``)."""
    spec = importlib.util.find_spec("_lib_engine")
    if spec is None or spec.origin is None:
        raise NdpiUnavailable("nDPI is not installed: it comes with the nfstream wheel "
                              "(pip install 'voip-probe[lab]')")
    return Path(spec.origin)


@cache
def _library() -> Any:
    lib = ctypes.CDLL(str(library_path()))
    lib.ndpi_revision.restype = ctypes.c_char_p
    revision = (lib.ndpi_revision() or b"").decode(errors="replace")
    if revision.split(".", 1)[0] != SUPPORTED_MAJOR:
        raise NdpiUnavailable(f"nDPI {revision or 'of unknown version'}: this wrapper knows "
                              f"the structures of nDPI {SUPPORTED_MAJOR}.x only")
    ptr, u16 = ctypes.c_void_p, ctypes.c_uint16
    lib.ndpi_init_detection_module.restype = ptr
    lib.ndpi_init_detection_module.argtypes = [ptr]
    lib.ndpi_finalize_initialization.restype = ctypes.c_int
    lib.ndpi_finalize_initialization.argtypes = [ptr]
    lib.ndpi_exit_detection_module.restype = None
    lib.ndpi_exit_detection_module.argtypes = [ptr]
    lib.ndpi_detection_get_sizeof_ndpi_flow_struct.restype = ctypes.c_uint32
    lib.ndpi_detection_get_sizeof_ndpi_flow_struct.argtypes = []
    lib.ndpi_detection_process_packet.restype = _Protocol
    lib.ndpi_detection_process_packet.argtypes = [ptr, ptr, ctypes.c_char_p, ctypes.c_ushort,
                                                  ctypes.c_uint64, ptr]
    # Older releases take a third argument (u_int8_t *protocol_was_guessed), 5.0 does not;
    # passing a valid pointer is harmless either way (an unused register argument).
    lib.ndpi_detection_giveup.restype = _Protocol
    lib.ndpi_detection_giveup.argtypes = [ptr, ptr, ptr]
    lib.ndpi_free_flow_data.restype = None
    lib.ndpi_free_flow_data.argtypes = [ptr]
    lib.ndpi_get_proto_name.restype = ctypes.c_char_p
    lib.ndpi_get_proto_name.argtypes = [ptr, u16]
    return lib


def revision() -> str:
    """nDPI's revision string (``5.0.0-...``)."""
    return str(_library().ndpi_revision().decode(errors="replace"))


@dataclass(frozen=True)
class Label:
    """What nDPI says about a flow: master and application protocol names and ids, and its
    classification state (``inspecting``, ``partial``, ``monitoring``, ``classified``)."""

    master: str
    app: str
    master_id: int = 0
    app_id: int = 0
    state: str = "inspecting"
    guessed: bool = False  # from ndpi_detection_giveup (a guess), not from inspection

    @property
    def name(self) -> str:
        """``STUN.WhatsAppCall``; one name when master and app are the same or one is unknown."""
        if self.master_id and self.app_id and self.master_id != self.app_id:
            return f"{self.master}.{self.app}"
        if self.app_id:
            return self.app
        return self.master

    @property
    def known(self) -> bool:
        return bool(self.master_id or self.app_id)

    def names(self) -> set[str]:
        """Every name a rule may list to match this label (``STUN.WhatsAppCall``,
        ``WhatsAppCall``, ``STUN``)."""
        out = {self.name}
        if self.app_id:
            out.add(self.app)
        if self.master_id:
            out.add(self.master)
        return out


UNKNOWN = Label("Unknown", "Unknown")


class Engine(_Closing):
    """One nDPI detection module (its caches are shared by every flow it sees)."""

    def __init__(self) -> None:
        self._lib = _library()
        module = self._lib.ndpi_init_detection_module(None)
        if not module:
            raise NdpiUnavailable("ndpi_init_detection_module failed")
        if self._lib.ndpi_finalize_initialization(module) != 0:
            self._lib.ndpi_exit_detection_module(module)
            raise NdpiUnavailable("ndpi_finalize_initialization failed")
        self._module: int | None = module
        self.flow_size = int(self._lib.ndpi_detection_get_sizeof_ndpi_flow_struct())
        self._names: dict[int, str] = {}

    def close(self) -> None:
        if self._module is not None:
            self._lib.ndpi_exit_detection_module(self._module)
            self._module = None

    def _live(self) -> int:
        if self._module is None:
            raise RuntimeError("the nDPI engine is closed")
        return self._module

    def proto_name(self, proto_id: int) -> str:
        if proto_id not in self._names:
            raw = self._lib.ndpi_get_proto_name(self._live(), proto_id)
            self._names[proto_id] = raw.decode(errors="replace") if raw else str(proto_id)
        return self._names[proto_id]

    def _label(self, proto: _Protocol, guessed: bool = False) -> Label:
        master, app = int(proto.proto.master), int(proto.proto.app)
        return Label(self.proto_name(master), self.proto_name(app), master, app,
                     STATES.get(int(proto.state), str(int(proto.state))), guessed)

    def new_flow(self) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(self.flow_size)

    def process(self, flow: ctypes.Array[ctypes.c_char], packet: bytes, time_ms: int) -> Label:
        """Feed one IP packet of ``flow``; the flow's label after it."""
        if len(packet) > 0xFFFF:
            raise ValueError("an IP packet is at most 65535 bytes")
        proto = self._lib.ndpi_detection_process_packet(self._live(), flow, packet,
                                                        len(packet), time_ms, None)
        return self._label(proto)

    def giveup(self, flow: ctypes.Array[ctypes.c_char]) -> Label:
        """nDPI's final answer for a flow it did not decide (a guess, mostly by port)."""
        was_guessed = ctypes.c_uint8(0)
        proto = self._lib.ndpi_detection_giveup(self._live(), flow, ctypes.byref(was_guessed))
        return self._label(proto, guessed=True)

    def free_flow(self, flow: ctypes.Array[ctypes.c_char]) -> None:
        """Free what nDPI allocated inside ``flow`` (the buffer itself is Python's)."""
        if self._module is not None:
            self._lib.ndpi_free_flow_data(flow)


# --- packets and flows ----------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    """The addressing of one IPv4 UDP/TCP packet."""

    proto: int
    src: str
    sport: int
    dst: str
    dport: int


def parse_ipv4(packet: bytes) -> Packet | None:
    """Addresses and ports of an IPv4 UDP/TCP packet; None for anything else (IPv6, ICMP,
    non-first fragments, truncated packets)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    fragment_offset = struct.unpack("!H", packet[6:8])[0] & 0x1FFF
    if proto not in (UDP, TCP) or fragment_offset or len(packet) < ihl + 4 or ihl < 20:
        return None
    sport, dport = struct.unpack("!HH", packet[ihl:ihl + 4])
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return Packet(proto, src, sport, dst, dport)


FlowKey = tuple[int, tuple[str, int], tuple[str, int]]


def flow_key(p: Packet) -> FlowKey:
    """The same key for both directions of a flow."""
    a, b = (p.src, p.sport), (p.dst, p.dport)
    return (p.proto, min(a, b), max(a, b))


@dataclass
class Flow:
    """One flow as the classifier keeps it: its client (the sender of its first packet),
    server, packet counts, nDPI state and label."""

    proto: int
    client: tuple[str, int]
    server: tuple[str, int]
    first_s: float
    last_s: float
    buffer: ctypes.Array[ctypes.c_char] | None
    packets: int = 0            # packets seen, both directions
    inspected: int = 0          # packets given to nDPI
    label: Label = UNKNOWN
    done: bool = False          # nDPI reached a final state or the packet limit
    verdict: str | None = None  # what a censor decided for the flow (drop, pass)
    extra: dict[str, Any] = field(default_factory=dict)

    def from_client(self, p: Packet) -> bool:
        return (p.src, p.sport) == self.client

    def to_json(self) -> dict[str, Any]:
        return {"proto": {UDP: "udp", TCP: "tcp"}.get(self.proto, str(self.proto)),
                "client": f"{self.client[0]}:{self.client[1]}",
                "server": f"{self.server[0]}:{self.server[1]}",
                "packets": self.packets, "inspected": self.inspected,
                "label": self.label.name, "master": self.label.master, "app": self.label.app,
                "state": self.label.state, "guessed": self.label.guessed,
                "verdict": self.verdict, **self.extra}


class Classifier(_Closing):
    """Flows keyed by their 5-tuple (both directions in one flow), each fed to nDPI until
    nDPI reaches a final state or ``max_packets`` packets were inspected, whichever first.

    Flows idle for ``idle_s`` are forgotten (their nDPI memory freed) by :meth:`expire`; a
    later packet of the same 5-tuple then starts a new flow, as in a real flow table.
    """

    def __init__(self, engine: Engine | None = None, max_packets: int = 32,
                 idle_s: float = 60.0) -> None:
        self.engine = engine or Engine()
        self._own_engine = engine is None
        self.max_packets = max_packets
        self.idle_s = idle_s
        self.flows: dict[FlowKey, Flow] = {}

    def close(self) -> None:
        for flow in self.flows.values():
            self._release(flow)
        self.flows.clear()
        if self._own_engine:
            self.engine.close()

    def _release(self, flow: Flow) -> None:
        if flow.buffer is not None:
            self.engine.free_flow(flow.buffer)
            flow.buffer = None

    def feed(self, packet: bytes, now_s: float) -> tuple[Flow, Packet] | None:
        """Account ``packet`` (an IPv4 packet, first byte the IP header) to its flow and give
        it to nDPI while the flow is still being inspected. None if it is not classifiable."""
        p = parse_ipv4(packet)
        if p is None:
            return None
        key = flow_key(p)
        flow = self.flows.get(key)
        if flow is None:
            flow = Flow(p.proto, (p.src, p.sport), (p.dst, p.dport), now_s, now_s,
                        self.engine.new_flow())
            self.flows[key] = flow
        flow.packets += 1
        flow.last_s = now_s
        if not flow.done and flow.buffer is not None:
            flow.label = self.engine.process(flow.buffer, packet, int(now_s * 1000))
            flow.inspected += 1
            if flow.label.state in FINAL_STATES or flow.inspected >= self.max_packets:
                flow.done = True
        return flow, p

    def stop_inspecting(self, flow: Flow) -> None:
        """No more packets of ``flow`` go to nDPI (a censor that has decided)."""
        flow.done = True

    def giveup(self, flow: Flow) -> Label:
        """nDPI's guess for a flow it has not labelled (kept as the flow's label)."""
        if flow.buffer is not None and not flow.label.known:
            flow.label = self.engine.giveup(flow.buffer)
        return flow.label

    def expire(self, now_s: float) -> list[Flow]:
        """Forget the flows idle for ``idle_s``; returns them."""
        gone = [k for k, f in self.flows.items() if now_s - f.last_s >= self.idle_s]
        out = []
        for key in gone:
            flow = self.flows.pop(key)
            self._release(flow)
            out.append(flow)
        return out
