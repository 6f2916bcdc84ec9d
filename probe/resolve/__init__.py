"""DNS for the probe: the run's shared resolver (:mod:`.resolver`), the wire exchange
(:mod:`.wire`) and the tampering evidence (:mod:`.tampering`). The ``dns`` *check*
(:mod:`probe.checks.dns`) turns a lookup and that evidence into a measurement."""

from probe.resolve.resolver import DnsResult, HostResolver, early_answers, parse_resolver
from probe.resolve.wire import query

__all__ = ["DnsResult", "HostResolver", "early_answers", "parse_resolver", "query"]
