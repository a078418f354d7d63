"""Access control of the dashboard (stdlib only).

Rules (see docs/watch.md "Dashboard"):

- Bound to a loopback address (the default ``127.0.0.1``) and no credentials configured:
  no login. Binding anywhere else requires credentials (:class:`UIConfig`).
- Credentials are a user name with a password hash and/or a token hash, made by
  ``synspill ui hash-password`` (PBKDF2-HMAC-SHA256, 260,000 iterations, random salt);
  plain secrets are never stored.
- A browser logs in at ``/login`` and gets a signed, HttpOnly, SameSite=Strict session
  cookie; scripts send ``Authorization: Bearer TOKEN``.
- Every state-changing request (POST) must be authenticated (when credentials exist) and,
  unless it carries a bearer token, present the CSRF token of its browser session
  (``X-CSRF-Token`` header or ``csrf`` form field): an HMAC of the session id under a
  per-process secret, so another site cannot forge it even against 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from synspill.errors import UsageError
from synspill.params import FromParams, check_keys, config_keys

ALGO = "pbkdf2_sha256"
ITERATIONS = 260_000


def hash_secret(secret: str, salt: str | None = None, iterations: int = ITERATIONS) -> str:
    """``pbkdf2_sha256$ITER$SALT$HASH`` of a password or token (what configs store)."""
    if not secret:
        raise UsageError("an empty password or token cannot be used")
    salt = salt or secrets.token_hex(16)
    dk = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), iterations)
    return f"{ALGO}${iterations}${salt}${base64.b64encode(dk).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a :func:`hash_secret` string (constant-time compare)."""
    try:
        algo, it, salt, want = stored.split("$")
        if algo != ALGO:
            return False
        got = hash_secret(secret, salt, int(it)).split("$")[3]
    except (ValueError, UsageError):
        return False
    return hmac.compare_digest(got, want)


def _valid_hash(value: str, key: str) -> str:
    parts = value.split("$")
    if len(parts) != 4 or parts[0] != ALGO or not parts[1].isdigit():
        raise UsageError(f"ui.{key}: {value[:24]!r}... is not a {ALGO} hash; make one with `synspill ui hash-password`")
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts local connections."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class UIConfig(FromParams):
    """The dashboard's address and credentials (``[ui]`` in a watch config or ``--auth FILE``).

    Attributes:
        bind: ``HOST:PORT`` to listen on (``watch --ui`` overrides it).
        username: Login name for browsers (with ``password_hash``).
        password_hash: ``synspill ui hash-password`` output for that user.
        token_hash: Hash of a bearer token for scripts (``Authorization: Bearer ...``).
        session_hours: Lifetime of a browser login.
        live_interval: Seconds between writes of each camera's live frame and status to the log
            (what ``synspill ui --db`` on another machine shows).
    """

    bind: str = "127.0.0.1:8080"
    username: str | None = None
    password_hash: str | None = None
    token_hash: str | None = None
    session_hours: float = 12.0
    live_interval: float = 2.0

    def __post_init__(self) -> None:
        host, port = parse_bind(self.bind)
        if self.password_hash:
            _valid_hash(self.password_hash, "password_hash")
            if not self.username:
                raise UsageError("ui.password_hash needs ui.username")
        if self.username and not self.password_hash:
            raise UsageError("ui.username needs ui.password_hash (from `synspill ui hash-password`)")
        if self.token_hash:
            _valid_hash(self.token_hash, "token_hash")
        if not 0.0 < self.session_hours <= 24 * 365:
            raise UsageError(f"ui.session_hours {self.session_hours} must be in (0, 8760]")
        if not 0.1 <= self.live_interval <= 3600:
            raise UsageError(f"ui.live_interval {self.live_interval} must be within 0.1-3600 seconds")
        if not is_loopback(host) and not self.has_credentials:
            raise UsageError(f"the dashboard on {self.bind} would be open to the network: set ui.username + "
                             "ui.password_hash or ui.token_hash (`synspill ui hash-password`), or bind 127.0.0.1")

    @property
    def has_credentials(self) -> bool:
        return bool(self.password_hash or self.token_hash)

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_bind(self.bind)


def parse_bind(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``PORT``) -> ``(host, port)``; host defaults to 127.0.0.1."""
    host, _, port = spec.rpartition(":") if ":" in spec else ("127.0.0.1", "", spec)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"dashboard address {spec!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def load_auth(path: str) -> dict[str, object]:
    """The ``[ui]`` table of a TOML file (``synspill ui --auth FILE``)."""
    import tomllib
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file; write a [ui] table with username/password_hash or token_hash")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{p}: not valid TOML: {e}") from None
    ui = data.get("ui", data)
    if not isinstance(ui, dict):
        raise UsageError(f"{p}: ui must be a table ([ui] with username/password_hash or token_hash)")
    check_keys(ui, config_keys(UIConfig), f"{p}: [ui]")
    return dict(ui)


class Signer:
    """Signs and checks session cookies and CSRF tokens with a per-process secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def _mac(self, data: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.secret, data, hashlib.sha256).digest()).decode().rstrip("=")

    def sign(self, payload: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def unsign(self, value: str | None) -> dict[str, object] | None:
        """The payload of a cookie signed here and not expired (``exp``), else None."""
        if not value or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
            return None
        return payload

    def csrf(self, sid: str) -> str:
        """The CSRF token of a browser session id."""
        return self._mac(b"csrf:" + sid.encode())

    def check_csrf(self, sid: str | None, token: str | None) -> bool:
        return bool(sid and token) and hmac.compare_digest(self.csrf(str(sid)), str(token))
