"""A real DPI engine for the lab: nDPI 5 (bundled in the ``nfstream`` wheel) through ctypes.

* :mod:`probe.lab.dpi.ndpi`: the engine and a per-flow classifier fed IP packets one by one.
* :mod:`probe.lab.dpi.nfq`: the inline censor, an NFQUEUE process in the censor namespace that
  drops the UDP flows nDPI labels with a listed application (residual and passive options).
* :mod:`probe.lab.dpi.offline`: classification of a capture file (pcap or pcapng) by flow.

Only the lab needs these (``pip install 'voip-probe[lab]'``); the probe never imports them.
"""
