"""The collector: a server that receives results files from volunteers and keeps them.

DESIGN.md "Collector": ``POST /api/v1/results`` accepts a results file (DESIGN.md
"Results file"), validates it (:mod:`probe.collector.validate`), stores the raw file
immutably by its SHA-256 and indexes its measurements (:mod:`probe.collector.storage`,
SQLite or PostgreSQL through one code path), and answers queries (:mod:`probe.collector.app`
puts the app together from :mod:`probe.collector.routes`). FastAPI, uvicorn and psycopg come
from the ``collector`` extra and are imported only by the modules that need them, so the
probe stays light.
"""
