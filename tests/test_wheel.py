"""The wheel as a user installs it, in clean venvs next to the projects whose top-level names its folders share.

The wheel is built from this checkout; each venv is created bare and filled with ``pip install --no-index``
from the wheelhouse that .ci/setup-env.sh downloads (TILEPILOT_WHEELHOUSE): tests never reach the network.
- core: the wheel and its core dependencies only. The core commands work, and a command that needs an
  extra says which in one line.
- co-installed: the wheel with OpenAI's Agents SDK (``agents``) and django-rules (``rules``). Each import name
  gives its own package, and tilepilot still finds its shipped rules.
Commands run in an empty folder, so the checkout's own ``agents/`` and ``rules/`` folders are out of reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.gen.pdfs import digital_pdf
from tests.requires import skip_missing

REPO = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_S = 600


def _wheelhouse() -> Path:
    folder = os.environ.get("TILEPILOT_WHEELHOUSE")
    if not folder or not Path(folder, ".tilepilot-ok").is_file():
        skip_missing("the wheelhouse of the wheel tests", "source .ci/setup-env.sh, which downloads it")
    return Path(folder)


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    # Nothing of this test process's environment that could point Python at the checkout or its venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """tilepilot's wheel, built from a copy of the checkout's files (never from stale build/ leftovers)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    source = tmp_path_factory.mktemp("source")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    out = tmp_path_factory.mktemp("dist")
    # The build backend (setuptools) comes from this environment: no build isolation, nothing downloaded.
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out),
                 str(source)], cwd=out, timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("tilepilot-*.whl")
    return built


def _venv(folder: Path, *requirements: str) -> Path:
    """A bare venv with ``requirements`` (and their dependencies) installed from the wheelhouse only."""
    wheelhouse = _wheelhouse()
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(folder)], cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    python = folder / "bin" / "python"
    proc = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--find-links",
                 str(wheelhouse), "--no-cache-dir", "--disable-pip-version-check", *requirements],
                cwd=folder.parent, timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python


@pytest.fixture(scope="module")
def core_venv(wheel, tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("core") / "venv", str(wheel))


@pytest.fixture(scope="module")
def coinstalled_venv(wheel, tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("coinstalled") / "venv", str(wheel), "openai-agents", "rules")


def _tilepilot(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([str(python.parent / "tilepilot"), *args], cwd=cwd)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_the_wheel_holds_only_the_tilepilot_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"tilepilot", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    # The shipped rules are package data, and the test rigs sit in their own subpackage.
    assert "tilepilot/shipped_rules/default.md" in names
    assert "tilepilot/py.typed" in names  # type checkers read the package's annotations (PEP 561)
    assert any(name.startswith("tilepilot/agents/eval/rigs/apps/") for name in names)
    assert not any(name.startswith("tilepilot/agents/eval/apps/") for name in names)


def test_every_package_folder_is_listed_in_pyproject():
    """A folder with an ``__init__.py`` that pyproject.toml does not list would be missing from the wheel."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools["package-dir"]

    def folder(package: str) -> Path:  # the longest mapped prefix decides, as in setuptools
        parts = package.split(".")
        prefix = next(n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in package_dir)
        return REPO / package_dir[".".join(parts[:prefix])] / Path(*parts[prefix:])

    listed = [folder(package) for package in setuptools["packages"]]
    on_disk = {init.parent for top in set(package_dir.values()) for init in (REPO / top).rglob("__init__.py")}
    assert on_disk - set(listed) == set(), "add these folders to [tool.setuptools] packages"
    assert set(listed) <= on_disk and len(set(listed)) == len(listed), listed


def test_core_dependencies_run_the_core_commands(core_venv, tmp_path):
    # Meaningful only if the extras really are absent.
    absent = _run([str(core_venv), "-c", "import importlib.util as u; print([m for m in "
                   "('soundfile', 'soxr', 'av', 'mss', 'pyautogui', 'jinja2', 'tokenizers', 'jiwer', 'mcp') "
                   "if u.find_spec(m)])"], cwd=tmp_path)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr

    help_text = _tilepilot(core_venv, "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    for command in ("review", "desktop", "listen", "rules", "serve", "eval"):
        assert command in help_text.stdout
    module_help = _run([str(core_venv), "-m", "tilepilot", "--help"], cwd=tmp_path)
    assert module_help.returncode == 0 and "review" in module_help.stdout, module_help.stderr

    rule = tmp_path / "mine.md"
    rule.write_text("---\ntools:\n  deny: [type]\n---\nBe careful.\n")
    checked = _tilepilot(core_venv, "rules", "check", str(rule), cwd=tmp_path)
    assert checked.returncode == 0 and "ok" in checked.stdout, checked.stdout + checked.stderr

    pdf = digital_pdf(tmp_path / "doc.pdf", pages=2)
    reviewed = _tilepilot(core_venv, "review", "--no-model", str(pdf), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert reviewed.returncode == 0, reviewed.stderr
    assert (tmp_path / "run" / "findings.json").is_file()

    status = _tilepilot(core_venv, "serve", "status", cwd=tmp_path)
    assert "Traceback" not in status.stderr, status.stderr
    assert "tiny" in status.stdout + status.stderr


@pytest.mark.parametrize(("args", "extra"), [
    (("eval", "review", "--small"), "eval"),
    (("listen", "talk.wav"), "audio"),
    (("desktop", "Press OK", "--base-url", "http://127.0.0.1:9"), "desktop"),
    (("mcp",), "mcp"),
])
def test_a_command_without_its_extra_names_it_in_one_line(core_venv, tmp_path, args, extra):
    line = _one_line_error(_tilepilot(core_venv, *args, cwd=tmp_path))
    assert line.endswith(f"pip install 'tilepilot[{extra}]'"), line
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


def test_agents_rules_and_tilepilot_each_import_their_own_package(coinstalled_venv, tmp_path):
    probe = ("import agents, rules, tilepilot, tilepilot.shipped_rules as shipped\n"
             "from agents import Agent, Runner\n"  # OpenAI's Agents SDK, whole
             "from rules import add_perm, predicate\n"  # django-rules, whole
             "import tilepilot.agents.cli\n"
             "for m in (agents, rules, tilepilot, shipped): print(m.__file__)\n")
    proc = _run([str(coinstalled_venv), "-c", probe], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    site = Path(proc.stdout.split()[0]).parent.parent
    paths = [Path(line) for line in proc.stdout.split()]
    assert paths == [site / "agents" / "__init__.py", site / "rules" / "__init__.py",
                     site / "tilepilot" / "__init__.py", site / "tilepilot" / "shipped_rules" / "__init__.py"]
    installed = {p.name for p in site.iterdir()}
    assert {"tools", "model_runtime"}.isdisjoint(installed), installed


def test_tilepilot_finds_its_shipped_rules_next_to_django_rules(coinstalled_venv, tmp_path):
    shipped = _run([str(coinstalled_venv), "-c", "import tilepilot.shipped_rules as s, os; print(os.path.dirname(s.__file__))"],
                   cwd=tmp_path).stdout.strip()
    checked = _tilepilot(coinstalled_venv, "rules", "check", shipped, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("ok") >= 4, checked.stdout  # default, desktop, listen, review
    by_default = _tilepilot(coinstalled_venv, "rules", "check", cwd=tmp_path)  # no paths: the shipped ones
    assert by_default.returncode == 0 and by_default.stdout == checked.stdout, by_default.stdout + by_default.stderr
    explained = _tilepilot(coinstalled_venv, "rules", "explain", cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert str(Path(shipped) / "default.md") in explained.stdout, explained.stdout
