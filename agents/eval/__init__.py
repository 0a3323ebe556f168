"""``tilepilot eval``: labelled suites that score the agents on any endpoint, and the reference answerer.

See :mod:`tilepilot.agents.eval.core` for the API a suite implements and :mod:`tilepilot.agents.eval.registry` for
the suites by name.
"""
