"""Routes and pages of the dashboard (Starlette, Jinja2 templates, one small script).

Pages are rendered on the server; ``static/app.js`` refreshes the camera grid and the
event list in place every ``refresh`` seconds (fetching the same fragments the page was
built from) and sends the action buttons' POSTs with the page's CSRF token. Without
JavaScript the pages still work (forms post and redirect back).

Everything reads the SQLite event log with a connection per request (WAL: readers never
block ``watch``); the live frames come from ``watch``'s memory (``watch --ui``) or from
the files ``watch`` writes under ``<snapshots>/live/`` (``synspill ui --db``).
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from synspill.errors import UsageError
from synspill.watch.ui.auth import Signer, UIConfig, check_secret
from synspill.watch.ui.live import LiveFrames

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SEVERITIES = ("low", "medium", "high", "critical")
SESSION, SID = "synspill_session", "synspill_sid"


@dataclass
class UIState:
    """What the app serves.

    Attributes:
        db: The event log.
        snapshots: The only folder snapshot and live-frame files are served from (None: none).
        ui: Address and credentials.
        live: In-process live frames (``watch --ui``); None reads the ``cameras`` table.
        negatives: Where "false alarm" exports hard negatives (default ``<db stem>.negatives``).
        tolerance: Margin of the suppression region a false alarm creates (fraction of the box).
        refresh: Seconds between the page's live refreshes.
        read_only: Show, never change: no action buttons, every POST but login/logout is 403.
    """

    db: Path
    snapshots: Path | None
    ui: UIConfig = field(default_factory=UIConfig)
    live: LiveFrames | None = None
    negatives: Path | None = None
    tolerance: float = 0.25
    refresh: float = 2.0
    read_only: bool = False
    signer: Signer = field(default_factory=Signer)
    report_dir: Path = field(default_factory=lambda: _temp_dir("synspill-report-"))

    def store(self) -> Any:
        from synspill.watch.store import EventStore

        return EventStore(self.db, existing=True)


def _temp_dir(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits."""
    import atexit
    import shutil

    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


# -- helpers -----------------------------------------------------------------------------
def _age(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0, int(time.time() - t))
    return f"{s}s" if s < 60 else f"{s // 60}m" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}" if s < 86400 else f"{s // 86400}d"


def _iso(t: float | None) -> str:
    from synspill.watch.report import iso

    return iso(t) if t else "-"


def served_path(root: Path | None, path: str | None) -> str | None:
    """``path`` relative to ``root`` when it lies inside it (what ``/files/`` serves), else None."""
    if root is None or not path:
        return None
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return None


#: Rendered reports kept (each a folder of PNGs under ``UIState.report_dir``); older ones are deleted.
REPORTS_KEPT = 8


def _prune(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest report folders (their names sort by creation time)."""
    import shutil

    for old in sorted(p for p in root.iterdir() if p.is_dir())[:-keep or None]:
        shutil.rmtree(old, ignore_errors=True)


def file_inside(root: Path, rel: str, suffixes: tuple[str, ...]) -> Path | None:
    """``root/rel`` when it resolves (links followed) to a file inside ``root`` with one of ``suffixes``, else None."""
    root = root.resolve()
    try:
        p = (root / rel).resolve()
        p.relative_to(root)
    except (ValueError, OSError):
        return None
    return p if p.is_file() and p.suffix.lower() in suffixes else None


def _spark(points: list[tuple[float, float]], w: int = 520, h: int = 120, pad: int = 24) -> dict[str, Any]:
    """Coordinates of an SVG polyline chart of ``(t, value)`` points (drawn by the template)."""
    if not points:
        return {"poly": "", "w": w, "h": h, "ymax": 0, "ymin": 0, "t0": None, "t1": None}
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    t0, t1 = min(ts), max(ts)
    lo, hi = min(0.0, min(vs)), max(vs) or 1.0
    sx = (w - 2 * pad) / max(t1 - t0, 1e-9)
    sy = (h - 2 * pad) / max(hi - lo, 1e-9)
    poly = " ".join(f"{pad + (t - t0) * sx:.1f},{h - pad - (v - lo) * sy:.1f}" for t, v in points)
    return {"poly": poly, "w": w, "h": h, "ymax": hi, "ymin": lo, "t0": _iso(t0), "t1": _iso(t1)}


def _filters(q: Any) -> dict[str, str]:
    keys = ("camera", "zone", "cls", "severity", "since", "until", "unacked", "status", "false_alarms")
    return {k: str(q.get(k, "")).strip() for k in keys if str(q.get(k, "")).strip()}


def _event_filter(f: dict[str, str]) -> Any:
    from synspill import taxonomy
    from synspill.watch.report import parse_time
    from synspill.watch.store import EventFilter

    cls = taxonomy.BY_ID[taxonomy.class_id(f["cls"])].name if f.get("cls") else None
    sev = f.get("severity") if f.get("severity") in SEVERITIES else None
    fa = {"only": True, "hide": False}.get(f.get("false_alarms", "hide"))
    return EventFilter(camera=f.get("camera"), zone=f.get("zone"), class_name=cls,
                       since=parse_time(f["since"]) if f.get("since") else None,
                       until=parse_time(f["until"]) if f.get("until") else None, min_severity=sev,
                       unacked=f.get("unacked") in ("1", "on", "true"),
                       status=f.get("status") if f.get("status") in ("open", "closed") else None, false_alarm=fa)


# -- the app -------------------------------------------------------------------------------
def create_app(state: UIState) -> Any:
    """The dashboard's ASGI app for ``state``."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    env = templates.env
    env.filters["age"] = _age
    env.filters["iso"] = _iso
    env.globals["severities"] = SEVERITIES

    def user(request: Request) -> str | None:
        """The authenticated user ('local' without credentials), or None."""
        if not state.ui.has_credentials:
            return "local"
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and state.ui.token_hash and check_secret(auth[7:].strip(), state.ui.token_hash):
            return "token"
        sess = state.signer.unsign(request.cookies.get(SESSION))
        return str(sess["user"]) if sess else None

    def bearer(request: Request) -> bool:
        return request.headers.get("authorization", "").lower().startswith("bearer ")

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        sid = request.cookies.get(SID) or secrets.token_urlsafe(18)
        ctx = {"request": request, "csrf": state.signer.csrf(sid), "refresh": state.refresh,
               "auth": state.ui.has_credentials,
               "read_only": state.read_only, **ctx}
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        if request.cookies.get(SID) != sid:
            resp.set_cookie(SID, sid, httponly=True, samesite="strict")
        return resp

    def deny_read(request: Request) -> Response | None:
        if user(request) is not None:
            return None
        if request.headers.get("accept", "").startswith("text/html") and request.method == "GET":
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return Response("authentication required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def deny_write(request: Request, change: bool = True) -> Response | None:
        """401 without a login/token, 403 without the session's CSRF token, from a foreign origin or read-only."""
        if user(request) is None:
            return Response("authentication required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if bearer(request):
            return None
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return Response("cross-origin request refused\n", status_code=403)
        token = request.headers.get("x-csrf-token")
        if token is None and request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
            token = str((await request.form()).get("csrf", ""))
        if not state.signer.check_csrf(request.cookies.get(SID), token):
            return Response("missing or wrong CSRF token; reload the page\n", status_code=403)
        if change and state.read_only:
            return Response("this dashboard is read-only (synspill ui --read-only)\n", status_code=403)
        return None

    # -- data -------------------------------------------------------------------------------
    def cameras() -> list[dict[str, Any]]:
        with state.store() as store:
            rows = {r["name"]: r for r in store.cameras()}
            open_ev = store.query(_event_filter({"status": "open"}))
        names = sorted(set(rows) | set(state.live.cameras() if state.live else []))
        out = []
        for n in names:
            row = rows.get(n, {})
            st = dict(row.get("state") or {})
            info = state.live.info(n) if state.live else None
            has_frame = info is not None or served_path(state.snapshots, row.get("frame")) is not None
            version = info["seq"] if info else int(row.get("updated") or 0)
            out.append({"name": n, "state": st, "updated": row.get("updated"), "has_frame": has_frame,
                        "version": version, "detections": info["detections"] if info else st.get("detections", 0),
                        "open": [e for e in open_ev if e["camera"] == n]})
        return out

    def events_or_error(f: dict[str, str]) -> list[dict[str, Any]]:
        """:func:`events`, or none with ``f["error"]`` set when a filter is wrong (e.g. ``since=yesterdayish``)."""
        try:
            return events(f)
        except UsageError as e:
            f["error"] = str(e)
            return []

    def events(f: dict[str, str], limit: int = 200) -> list[dict[str, Any]]:
        with state.store() as store:
            rows = store.query(_event_filter(f))
        rows = rows[-limit:][::-1]  # newest first
        for r in rows:
            r["snapshot_url"] = served_path(state.snapshots, r.get("snapshot"))
        return rows

    # -- routes -------------------------------------------------------------------------------
    async def index(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        f = _filters(request.query_params)
        evs = events_or_error(f)
        from synspill import taxonomy

        return page(request, "index.html", {"cameras": cameras(), "events": evs, "f": f, "classes": taxonomy.NAMES,
                                            "qs": request.url.query})

    async def part_cameras(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        return page(request, "_cameras.html", {"cameras": cameras()})

    async def part_events(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        f = _filters(request.query_params)
        evs = events_or_error(f)
        return page(request, "_events.html", {"events": evs, "f": f})

    async def api_state(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        cams = cameras()
        return JSONResponse({"cameras": [{"name": c["name"], "state": c["state"], "version": c["version"],
                                          "open_events": [e["id"] for e in c["open"]]} for c in cams]})

    async def api_events(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        return JSONResponse(events(_filters(request.query_params)))

    async def camera_frame(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        name = request.path_params["name"]
        headers = {"Cache-Control": "no-store"}
        if state.live is not None and (jpg := state.live.jpeg(name)) is not None:
            return Response(jpg, media_type="image/jpeg", headers=headers)
        with state.store() as store:
            row = next((r for r in store.cameras() if r["name"] == name), None)
        rel = served_path(state.snapshots, row.get("frame") if row else None)
        if rel is None or state.snapshots is None:
            return Response("no frame\n", status_code=404)
        p = state.snapshots.resolve() / rel
        if not p.is_file():
            return Response("no frame\n", status_code=404)
        return Response(p.read_bytes(), media_type="image/jpeg", headers=headers)

    async def files(request: Request) -> Response:
        """A file under the snapshots folder; anything else (``..``, links out, absolute) is 404."""
        if (d := deny_read(request)) is not None:
            return d
        if state.snapshots is None:
            return Response("not found\n", status_code=404)
        p = file_inside(state.snapshots, request.path_params["path"], (".jpg", ".jpeg", ".png"))
        if p is None:
            return Response("not found\n", status_code=404)
        return Response(p.read_bytes(), media_type="image/png" if p.suffix.lower() == ".png" else "image/jpeg")

    async def event_page(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        eid = int(request.path_params["id"])
        with state.store() as store:
            ev = store.event(eid)
            obs = store.observations(eid) if ev else []
            sup = [s for s in store.suppressions(ev["camera"]) if s.get("event_id") == eid] if ev else []
        if ev is None:
            return page(request, "error.html", {"message": f"no event {eid}"}, status=404)
        ev["snapshot_url"] = served_path(state.snapshots, ev.get("snapshot"))
        ev["frame_url"] = served_path(state.snapshots, ev.get("frame"))
        fw, fh = max(1, ev["frame_w"]), max(1, ev["frame_h"])
        conf = _spark([(o["t"], o["confidence"]) for o in obs])
        area = _spark([(o["t"], 100.0 * o["area"] / (fw * fh)) for o in obs])
        return page(request, "event.html", {"ev": ev, "conf": conf, "area": area, "n_obs": len(obs),
                                            "suppressions": sup})

    async def action(request: Request) -> Response:
        if (d := await deny_write(request)) is not None:
            return d
        eid, what = int(request.path_params["id"]), request.path_params["action"]
        msg = ""
        try:
            with state.store() as store:
                if what == "ack":
                    store.ack([eid])
                elif what == "close":
                    store.close_events([eid], reason="closed in dashboard")
                elif what == "false-alarm":
                    sid = store.mark_false_alarm(eid, tolerance=state.tolerance, note=f"dashboard ({user(request)})")
                    row = store.event(eid)
                    msg = f"suppression {sid}"
                    if row is not None:
                        from synspill.watch.negatives import export_negative

                        neg = export_negative(row, state.negatives or state.db.with_name(state.db.stem + ".negatives"))
                        msg += f"; hard negative {neg}" if neg else "; no clean frame to export (watch ran without snapshots)"
                elif what == "not-false-alarm":  # a mark made by mistake: the spill must not train as background
                    row = store.event(eid)
                    if row is None or not row.get("false_alarm"):
                        return JSONResponse({"ok": False, "error": f"event {eid} is not marked as a false alarm"}, status_code=409)
                    n = store.unmark_false_alarm(eid)
                    from synspill.watch.negatives import remove_negative

                    gone = remove_negative(eid, state.negatives or state.db.with_name(state.db.stem + ".negatives"))
                    msg = f"{n} suppression(s) removed" + (f"; hard negative {gone} removed" if gone else "")
                else:
                    return Response("unknown action\n", status_code=404)
        except UsageError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=404)
        log.info("dashboard: event %d %s by %s %s", eid, what, user(request), msg)
        if request.headers.get("x-csrf-token") or bearer(request):
            return JSONResponse({"ok": True, "event": eid, "action": what, "detail": msg})
        return RedirectResponse(request.headers.get("referer") or f"/events/{eid}", status_code=303)

    async def suppressions_page(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        with state.store() as store:
            rows = store.suppressions()
        return page(request, "suppressions.html", {"rows": rows})

    async def unsuppress(request: Request) -> Response:
        if (d := await deny_write(request)) is not None:
            return d
        sid = int(request.path_params["sid"])
        try:
            with state.store() as store:
                store.remove_suppression(sid)
        except UsageError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=404)
        if request.headers.get("x-csrf-token") or bearer(request):
            return JSONResponse({"ok": True, "removed": sid})
        return RedirectResponse("/suppressions", status_code=303)

    async def report_page(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        from synspill.watch.report import build_report

        f = _filters(request.query_params)
        bucket = request.query_params.get("bucket", "day")
        bucket = bucket if bucket in ("hour", "day", "week", "month") else "day"
        out = state.report_dir / f"{time.time_ns():x}"
        _prune(state.report_dir, keep=REPORTS_KEPT - 1)
        try:
            summary = build_report(events(f, limit=10**9), out, bucket=bucket)
            imgs = [f"{out.name}/{Path(p).name}" for p in summary["files"] if p.endswith(".png")]
        except UsageError as e:
            summary, imgs, f["error"] = {}, [], str(e)
        return page(request, "report.html", {"summary": summary, "images": imgs, "f": f, "bucket": bucket})

    async def report_file(request: Request) -> Response:
        if (d := deny_read(request)) is not None:
            return d
        p = file_inside(state.report_dir, request.path_params["path"], (".png",))
        if p is None:
            return Response("not found\n", status_code=404)
        return Response(p.read_bytes(), media_type="image/png")

    async def login(request: Request) -> Response:
        nxt = request.query_params.get("next", "/")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        if request.method == "GET":
            return page(request, "login.html", {"next": nxt, "error": None})
        form = await request.form()
        if not state.signer.check_csrf(request.cookies.get(SID), str(form.get("csrf", ""))):
            return Response("missing or wrong CSRF token; reload the page\n", status_code=403)
        name, pw = str(form.get("username", "")), str(form.get("password", ""))
        ok = bool(state.ui.username and state.ui.password_hash and secrets.compare_digest(name, state.ui.username)
                  and check_secret(pw, state.ui.password_hash))
        if not ok:
            log.warning("dashboard: failed login for %r from %s", name, request.client.host if request.client else "?")
            return page(request, "login.html", {"next": nxt, "error": "wrong user name or password"}, status=401)
        resp = RedirectResponse(nxt, status_code=303)
        exp = time.time() + state.ui.session_hours * 3600
        resp.set_cookie(SESSION, state.signer.sign({"user": name, "exp": exp}), httponly=True, samesite="strict",
                        max_age=int(state.ui.session_hours * 3600))
        return resp

    async def logout(request: Request) -> Response:
        if (d := await deny_write(request, change=False)) is not None:
            return d
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION)
        return resp

    routes = [
        Route("/", index), Route("/partials/cameras", part_cameras), Route("/partials/events", part_events),
        Route("/api/state", api_state), Route("/api/events", api_events),
        Route("/cameras/{name}/frame.jpg", camera_frame), Route("/files/{path:path}", files),
        Route("/events/{id:int}", event_page), Route("/events/{id:int}/{action}", action, methods=["POST"]),
        Route("/suppressions", suppressions_page), Route("/suppressions/{sid:int}/remove", unsuppress, methods=["POST"]),
        Route("/report", report_page), Route("/report/files/{path:path}", report_file),
        Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))


class SecurityHeaders:
    """ASGI wrapper adding a strict Content-Security-Policy (no inline script) and friends to every response."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                                     b"frame-ancestors 'none'; form-action 'self'"),
        (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)
