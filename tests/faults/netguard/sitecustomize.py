"""Network guard for child processes under test: only loopback (and TILEPILOT_NETGUARD_ALLOW) may
be reached. Any other connect or DNS lookup fails, and is appended to TILEPILOT_NETGUARD_LOG, so a
hub lookup hidden in a dependency is caught even if the dependency swallows the error."""

import ipaddress
import json
import os
import socket
import traceback

_allow = {h.strip() for h in os.environ.get("TILEPILOT_NETGUARD_ALLOW", "").split(",") if h.strip()}
_log = os.environ.get("TILEPILOT_NETGUARD_LOG")


def _ok_host(host) -> bool:
    if host in _allow or host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _violation(what: str, target) -> None:
    if _log:
        with open(_log, "a") as fh:
            fh.write(json.dumps({"what": what, "target": repr(target), "pid": os.getpid(),
                                 "stack": traceback.format_stack(limit=8)}) + "\n")
    raise OSError(f"tilepilot netguard: blocked {what} to {target!r}")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _ok_host(address[0]):
        _violation("connect", address)


def connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if not _ok_host(host):
        _violation("dns", host)
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
