"""Long checks across processes and hosts (30 s runs, reload storms): `make scale`, not `make test`.

tests/conftest.py leaves this folder out of collection unless COVET_PIPE_SCALE=1 (which `make scale`
sets), so a plain `pytest` stays within the default suite's time budget.
"""
