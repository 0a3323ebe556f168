"""`tilepilot rules check|explain|new`: output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tilepilot.agents.errors import USER_ERRORS, exit_code_for
from tilepilot.agents.rules.cli import register

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    """Run the rules group the way tilepilot.agents.cli.main does: user errors -> one line + exit code."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    result = runner.invoke(app, list(args))
    if isinstance(result.exception, USER_ERRORS):
        return exit_code_for(result.exception), result.output + f"error: {result.exception}\n"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_check_ok_files(tmp_path):
    code, out = invoke("rules", "check", str(REPO / "rules"), str(REPO / "rules" / "examples"))
    assert code == 0
    names = [line.split()[1] for line in out.splitlines() if line.startswith("ok  ")]
    assert [Path(n).name for n in names] == ["default.md", "desktop.md", "listen.md", "review.md", "contract.md", "safe-desktop.md"]


def test_check_without_paths_checks_the_shipped_rules_and_the_agents_files_here(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "contracts"
    folder.mkdir(parents=True)
    (tmp_path / "project" / "AGENTS.md").write_text("---\nlimits:\n  max_stepz: 3\n---\n")
    monkeypatch.chdir(folder)
    code, out = invoke("rules", "check")
    assert code == 5, out  # the AGENTS.md an agent started here would read is broken
    names = [Path(line.split()[1]).name for line in out.splitlines() if line.startswith("ok  ")]
    assert names == ["default.md", "desktop.md", "listen.md", "review.md"], out
    assert f"{tmp_path / 'project' / 'AGENTS.md'}:3: unknown key 'limits.max_stepz'" in out, out


def test_check_reports_file_line_and_fails(write_rule):
    good = write_rule("---\nlimits: {max_steps: 3}\n---\n", "good.md")
    bad = write_rule("---\napplies_to: [review]\nlimits:\n  max_stepz: 3\n---\n", "bad.md")
    code, out = invoke("rules", "check", str(good), str(bad))
    assert code == 5
    assert f"ok  {good}" in out
    assert f"{bad}:4: unknown key 'limits.max_stepz'; did you mean 'max_steps'?" in out


def test_explain_shows_chain_skips_policy_and_prompt(tmp_path, write_rule):
    review_only = write_rule("---\napplies_to: [review]\n---\nreview prose\n", "review-only.md")
    write_rule("---\nactions:\n  deny_text: ['/delete/i']\n---\nfolder prose\n", "AGENTS.md", tmp_path / "docs")
    target = tmp_path / "docs" / "form.pdf"
    target.write_bytes(b"%PDF-")
    code, out = invoke("rules", "explain", "--agent", "desktop", "--rules", str(review_only), "--rules", str(REPO / "rules/examples/safe-desktop.md"), str(target))
    assert code == 0, out
    chain = out.split("Merged policy")[0]
    assert chain.index("default.md") < chain.index("desktop.md") < chain.index("review-only.md") < chain.index("safe-desktop.md") < chain.index("AGENTS.md")
    assert "SKIPPED  --rules" in chain and "applies_to [review] does not include desktop" in chain
    assert f"/delete/i  <- {(tmp_path / 'docs' / 'AGENTS.md').resolve()}:3 (actions.deny_text[0])" in out
    assert "max_steps = 40  <- " in out and "safe-desktop.md" in out.split("max_steps = 40")[1].splitlines()[0]
    assert "folder prose" in out.split("Prompt text:")[1] and "review prose" not in out


def test_explain_without_target_says_agents_md_skipped():
    code, out = invoke("rules", "explain", "--agent", "listen")
    assert code == 0 and "AGENTS.md lookup skipped: no TARGET given" in out


def test_explain_with_bad_rule_file_exits_5_naming_it(write_rule):
    bad = write_rule("---\ntools: {deny: 7}\n---\n", "bad.md")
    code, out = invoke("rules", "explain", "--rules", str(bad))
    assert code == 5 and f"{bad}:2: tools.deny" in out


def test_explain_unknown_agent_is_usage_error():
    code, out = invoke("rules", "explain", "--agent", "robot")
    assert code == 2 and "use one of review, desktop, listen" in out


def test_new_scaffolds_a_valid_file_and_refuses_to_overwrite(tmp_path):
    code, out = invoke("rules", "new", "contract-review", "--agent", "review", "--out", str(tmp_path))
    path = tmp_path / "contract-review.md"
    assert code == 0 and path.is_file() and "created" in out
    assert "applies_to: [review]" in path.read_text()
    code, out = invoke("rules", "check", str(path))
    assert code == 0 and out.startswith("ok  ")
    before = path.read_text()
    code, out = invoke("rules", "new", "contract-review", "--out", str(tmp_path))
    assert code == 2 and "already exists" in out and path.read_text() == before


def test_new_rejects_bad_names(tmp_path):
    code, out = invoke("rules", "new", "../escape", "--out", str(tmp_path))
    assert code == 2 and "letters, digits" in out and not list(tmp_path.iterdir())


def test_real_entry_point_exit_codes(write_rule):
    bad = write_rule("---\nx: !!python/object/apply:os.system ['true']\n---\n", "bad.md")
    run = subprocess.run([sys.executable, "-m", "tilepilot", "rules", "check", str(bad)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 5, run.stderr
    assert f"{bad}:2: YAML tag !!python/object/apply:os.system is not allowed" in run.stdout
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_keys_lists_every_name_the_executor_accepts_with_its_canonical_form():
    import json

    from tilepilot.tools.keys import KEYS

    code, out = invoke("rules", "keys", "--json")
    assert code == 0
    table = json.loads(out)
    assert set(table) == set(KEYS)
    assert table["ctrlright"]["canonical"] == "ctrl" and table["\n"]["canonical"] == "enter"
    assert table["!"] == {"canonical": "!", "keysym": "exclam", "shift": True}
