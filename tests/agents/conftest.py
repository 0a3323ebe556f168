"""Fixtures shared by the agents' test packages."""

from tests.agents.eval.eval_cli import oracle_run_fixture

# The small grounding suite for oracle and oracle:0.5, every run kept with its eval.json: scored by
# tests/agents/eval/test_grounding_eval.py, exported and fine-tuned on by tests/agents/export.
grounding_run = oracle_run_fixture("grounding", scope="session", keep_runs=True)
