"""``tilepilot eval``: labelled suites that score the agents on any endpoint, and the reference answerer.

See :mod:`agents.eval.core` for the API a suite implements and :mod:`agents.eval.registry` for
the suites by name.
"""
