"""Which model servers an MCP caller may send pages to, and which of them get the API key.

A caller's ``base_url`` is the caller's choice, and the caller is not trusted: pages go only to a
loopback server or to one the user allowed with ``tilepilot mcp --allow-server URL``. The
``TILEPILOT_API_KEY`` of the MCP server's process belongs to the server(s) that process was
configured for (``--base-url``/``TILEPILOT_BASE_URL``, or the managed local server when none is
configured): a call sends it there and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tilepilot.agents.backend import base_urls_from
from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime.server import is_loopback
from tilepilot.model_runtime.transport import normalize_base_url

DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical(url: str) -> str | None:
    """``scheme://host:port/path`` of an http(s) URL as the client will call it (no ``/v1``); None if it is none."""
    try:
        parts = urlsplit(normalize_base_url(url))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname.lower()
    return f"{parts.scheme.lower()}://{host}:{port or DEFAULT_PORTS[parts.scheme.lower()]}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class ModelServers:
    configured: tuple[str, ...]  # as given; the servers a call without base_url uses
    allowed: tuple[str, ...]  # canonical --allow-server URLs
    api_key: str | None  # sent to the configured servers only

    @classmethod
    def of(cls, configured: Sequence[str], allowed: Sequence[str], api_key: str | None) -> ModelServers:
        """``configured``: this process's --base-url (empty: its TILEPILOT_BASE_URL, then the managed server)."""
        urls = base_urls_from(list(configured) or None)
        bad = [url for url in (*urls, *allowed) if canonical(url) is None]
        if bad:
            raise UsageError(f"{bad[0]}: not an http(s) server URL (--base-url and --allow-server take http://HOST:PORT)")
        return cls(tuple(urls), tuple(key for key in map(canonical, allowed) if key), api_key or None)

    def check(self, url: str) -> None:
        """Refuse a caller's server that is neither on this machine's loopback nor allowed."""
        key = canonical(url)
        host = urlsplit(key).hostname if key else None
        if key is None or not (is_loopback(host or "") or key in self.allowed or key in self._configured()):
            raise UsageError(f"base_url: {url} is not a loopback server nor one this MCP server allows "
                             "(start it with --allow-server URL to allow that server)")

    def for_caller(self, base_url: Sequence[str]) -> tuple[list[str], str | None]:
        """The servers a call uses, and the API key it may send them (None: send none)."""
        urls = base_urls_from(list(base_url)) if base_url else []  # (base_urls_from([]) would read the environment)
        if not urls:
            return list(self.configured), self.api_key
        for url in urls:
            self.check(url)
        ours = self._configured() and all(canonical(url) in self._configured() for url in urls)
        return urls, self.api_key if ours else None

    def _configured(self) -> set[str]:
        return {key for key in map(canonical, self.configured) if key}
