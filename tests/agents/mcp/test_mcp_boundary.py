"""The MCP server's boundaries without a session: every path argument is classified, paths resolve before the
check, caller servers and the API key, the Host names of a loopback HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilepilot.agents.errors import UsageError
from tilepilot.agents.mcp.roots import NOT_PATHS, PATH_ARGUMENTS, Boundary, paths_from_roots
from tilepilot.agents.mcp.servers import ModelServers, canonical
from tilepilot.agents.mcp.transport import loopback_names
from tilepilot.api_types import DesktopRequest, ListenRequest, ReviewRequest


@pytest.mark.parametrize("request_type", [ReviewRequest, DesktopRequest, ListenRequest])
def test_every_tool_argument_is_known_to_be_a_path_or_not(request_type) -> None:
    """A new field must be classified here before it reaches callers: a path argument can never slip past the roots."""
    assert set(request_type.model_fields) <= set(PATH_ARGUMENTS) | NOT_PATHS
    assert not set(PATH_ARGUMENTS) & NOT_PATHS


def test_paths_are_resolved_before_the_check(tmp_path: Path) -> None:
    root, outside, runs = tmp_path / "root", tmp_path / "outside", tmp_path / "runs"
    for folder in (root, outside, runs):
        folder.mkdir()
    (root / "escape").symlink_to(outside)
    boundary = Boundary.of([root], runs)
    assert boundary.resolve("paths", root / "a.pdf") == root.resolve() / "a.pdf"
    for sneaky in (root / "escape" / "a.pdf", f"{root}/../outside/a.pdf", outside, f"{root}-other/a.pdf"):
        with pytest.raises(UsageError, match=r"^paths: .* is outside the roots"):
            boundary.resolve("paths", sneaky)
    with pytest.raises(UsageError, match="^paths: "):
        boundary.check("paths", [str(runs / "run" / "report.md")])  # inputs: the roots only
    boundary.check("out", [str(runs / "new-run")])  # run folders: the runs folder too
    boundary.check("model", ["tiny", "gemma-4-12b", None])  # profile names are no paths
    with pytest.raises(UsageError, match="^model: "):
        boundary.check("model", [str(outside)])
    with pytest.raises(UsageError, match="^out: "):
        Boundary.of([], runs, declared=True).check("out", [str(root / "run")])  # declared no roots: nothing
    (root / "loop").symlink_to(root / "loop")
    for unusable in (root / "loop" / "a.pdf", f"{root}/a\0.pdf"):
        with pytest.raises(UsageError, match="^paths: .* is no usable path"):
            boundary.resolve("paths", unusable)


def test_client_roots_are_local_file_uris_only(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    assert paths_from_roots([folder.as_uri(), "file://localhost/srv/x", "https://example.com/x", "file://other-host/x"]) \
        == [folder, Path("/srv/x")]


def test_caller_servers_and_the_key() -> None:
    assert canonical("http://LocalHost:8000/v1/") == canonical("http://localhost:8000") == "http://localhost:8000"
    assert canonical("https://gpu.lan/v1") == "https://gpu.lan:443" and canonical("ftp://x") is None
    assert canonical("http://[::1]:9/") == "http://[::1]:9" and canonical("http://x:notaport") is None
    servers = ModelServers.of(["http://127.0.0.1:8000/v1"], ["https://gpu.lan"], "KEY")
    assert servers.for_caller([]) == (["http://127.0.0.1:8000/v1"], "KEY")
    assert servers.for_caller(["http://127.0.0.1:8000"]) == (["http://127.0.0.1:8000"], "KEY")
    assert servers.for_caller(["http://127.0.0.1:8001"]) == (["http://127.0.0.1:8001"], None)
    assert servers.for_caller(["http://127.0.0.1:8000,https://gpu.lan:443/v1"]) == (
        ["http://127.0.0.1:8000", "https://gpu.lan:443/v1"], None)  # one foreign server among them: no key
    for refused in ("http://10.0.0.5:8000", "http://127.0.0.1.evil.com", "http://127.0.0.1@evil.com", "file:///etc"):
        with pytest.raises(UsageError, match="^base_url: .*--allow-server"):
            servers.for_caller([refused])
    assert ModelServers.of([], [], "KEY").for_caller([]) == ([], "KEY")  # the managed server is the configured one
    with pytest.raises(UsageError, match="not an http"):
        ModelServers.of([], ["gpu.lan:8000"], None)


def test_loopback_host_names_are_the_bound_address_and_port() -> None:
    assert loopback_names("127.0.0.2", 9) == ["127.0.0.2:9"]
    assert loopback_names("127.0.0.1", 9) == ["127.0.0.1:9", "localhost:9"]
    assert loopback_names("::1", 9) == ["[::1]:9", "localhost:9"]
    assert loopback_names("localhost", 9) == ["localhost:9", "127.0.0.1:9"]
