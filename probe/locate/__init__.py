"""Where the censor sits: TTL-limited test/control probes (:mod:`.core`) over raw
sockets (:mod:`.ttl`), aimed at the endpoints a scan found blocked or that the user
named (:mod:`.targets`). Needs root or CAP_NET_RAW."""
