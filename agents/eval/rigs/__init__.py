"""Test rigs of ``tilepilot eval`` and the tests, never of the agents themselves.

The reference answerer (``--model oracle``: :mod:`.oracle`, :mod:`.review_oracle`, :mod:`.screen_oracle`),
the test apps on a virtual screen (:mod:`.apps`) and their X-server workers (:mod:`.xserver`), and the
generators of the labelled corpora (:mod:`.review_data`, :mod:`.listen_data`, :mod:`.speech`). They ship
behind the eval extra; only :mod:`tilepilot.agents.eval` and tests/ import them (tests/test_layering.py).
"""
