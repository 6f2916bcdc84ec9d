"""voip-probe: measure whether internet calls are blocked, and how.

The package is laid out as in ``DESIGN.md``: data flows one way, from target files
(:mod:`probe.targets`) through the runner (:mod:`probe.runner`) and the checks
(:mod:`probe.checks`, all talking to the network through :mod:`probe.net`) to
measurements, verdicts (:mod:`probe.verdicts`) and results files (:mod:`probe.results`).
"""

__version__ = "0.1.0"
SOFTWARE_NAME = "voip-probe"
SCHEMA_VERSION = 1
