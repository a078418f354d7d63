"""Watch configuration: cameras, zones, alert rules and sinks, from a file or from flags.

A TOML (``.toml``) or YAML (``.yaml``/``.yml``) file holds top-level ``db`` and
``snapshots``, a ``[defaults]`` table applied to every camera, ``[sinks]``,
``[severity]`` and one ``[[cameras]]`` entry per camera (with ``[[cameras.zones]]``).
Every error names the file and the key (``cams.toml: cameras[1].fps: ...``).
See ``docs/watch.md`` for a full example.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from synspill import taxonomy
from synspill.errors import UsageError
from synspill.params import FromParams
from synspill.watch import DEFAULT_DB
from synspill.watch.alerts import AlertPolicy, SeverityRule
from synspill.watch.baseline import BaselineConfig
from synspill.watch.ui.auth import UIConfig
from synspill.watch.zones import CRITICALITY, Zone


@dataclass(frozen=True)
class CameraConfig(FromParams):
    """One camera.

    Attributes:
        name: Unique camera name (used in topics, file names, events).
        url: ``rtsp://``, ``http(s)://`` (MJPEG, MPEG-TS, HLS), a video file, a webcam
            index (``0``) or an image folder.
        model: Weights / run folder / VLM for :func:`synspill.predictors.load_predictor`,
            or ``py:module:factory`` for a custom predictor.
        backend, device, imgsz, adapter: Passed to :class:`~synspill.models.PredictorConfig`.
        prompt: VLM user prompt (the deployed system takes the user's text).
        classes: Taxonomy ids to keep (None: all).
        scales: YOLO multi-scale inference sizes, multiples of ``imgsz`` (None: the run's default).
        fps: Samples per second taken from the stream.
        policy: Threshold, k of n, cooldown, re-alert and closing rules.
        zones: Named polygons with a criticality each.
        loop: Replay a video file / folder forever (demos, soak tests).
        baseline: The clean-scene reference that suppresses detections of unchanged
            regions (:mod:`synspill.watch.baseline`; off by default).
    """

    name: str
    url: str
    model: str
    backend: str = "auto"
    device: str = "auto"
    imgsz: int | None = None
    adapter: str | None = None
    prompt: str | None = None
    classes: tuple[int, ...] | None = None
    scales: tuple[float, ...] | None = None
    fps: float = 2.0
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    zones: tuple[Zone, ...] = ()
    loop: bool = False
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/#+ \t"):
            raise UsageError(f"camera name {self.name!r} must be non-empty without '/', '#', '+' or spaces (it is an MQTT topic level)")
        if not 0.0 < self.fps <= 60.0:
            raise UsageError(f"camera {self.name}: fps {self.fps} must be in (0, 60]")
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise UsageError(f"camera {self.name}: zone names {names} must be unique")


@dataclass(frozen=True)
class SinkConfig(FromParams):
    """Where alerts go besides the database.

    Attributes:
        stdout: JSON lines on stdout.
        webhook: URL to POST each alert to (JSON body).
        webhook_retries: Attempts after the first failure (exponential back-off).
        mqtt: ``host:port`` of an MQTT broker.
        mqtt_prefix: Topic prefix: alerts on ``<prefix>/<camera>/events``.
        mqtt_retain: Publish a retained ``<prefix>/<camera>/state`` with the open events.
        mqtt_username, mqtt_password: Broker credentials (optional).
        snapshots: Folder for one annotated JPEG per alert (None: none).
        delivery_grace: Seconds the webhook and MQTT sinks get at exit to deliver pending
            alerts; what is still undelivered stays in the event log and is sent on the next start.
    """

    stdout: bool = True
    webhook: str | None = None
    webhook_retries: int = 5
    mqtt: str | None = None
    mqtt_prefix: str = "synspill"
    mqtt_retain: bool = True
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    snapshots: str | None = None
    delivery_grace: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.delivery_grace <= 3600.0:
            raise UsageError(f"delivery_grace {self.delivery_grace} must be within 0-3600 seconds")
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise UsageError(f"webhook {self.webhook!r} must be an http:// or https:// URL")
        if self.mqtt:
            parse_hostport(self.mqtt)
        if self.webhook_retries < 0:
            raise UsageError(f"webhook_retries {self.webhook_retries} must be >= 0")


@dataclass(frozen=True)
class WatchConfig:
    """Everything ``synspill watch`` runs (cameras, log, sinks, severity rule)."""

    cameras: tuple[CameraConfig, ...]
    db: str = DEFAULT_DB
    sinks: SinkConfig = field(default_factory=SinkConfig)
    severity: SeverityRule = field(default_factory=SeverityRule)
    observations: bool = True
    ui: UIConfig = field(default_factory=UIConfig)

    def __post_init__(self) -> None:
        if not self.cameras:
            raise UsageError("no cameras: give a SOURCE or a --config file with [[cameras]]")
        names = [c.name for c in self.cameras]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UsageError(f"camera names must be unique; repeated: {', '.join(dup)}")


def parse_hostport(spec: str, default_port: int = 1883) -> tuple[str, int]:
    """``host[:port]`` -> ``(host, port)``."""
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", str(default_port))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"MQTT broker {spec!r} must be HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


_POLICY_KEYS = {f.name for f in fields(AlertPolicy)}
#: ``baseline`` is the mode; ``baseline_<field>`` the other :class:`BaselineConfig` fields.
_BASELINE_KEYS = {"baseline"} | {f"baseline_{f.name}" for f in fields(BaselineConfig) if f.name != "mode"}
_CAMERA_KEYS = {"name", "url", "model", "backend", "device", "imgsz", "adapter", "prompt", "classes", "scales",
                "fps", "zones", "loop"} | _POLICY_KEYS | _BASELINE_KEYS
_DEFAULT_KEYS = _CAMERA_KEYS - {"name", "url", "zones"}
_SINK_KEYS = {f.name for f in fields(SinkConfig)}
_SEVERITY_KEYS = {"weights", "area_full", "growth_full", "growth_window", "default_criticality", "class_weights", "levels"}
_TOP_KEYS = {"db", "snapshots", "observations", "defaults", "sinks", "severity", "cameras", "ui"}


class _Ctx:
    def __init__(self, path: str) -> None:
        self.path = path

    def err(self, key: str, msg: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {msg}")

    def check_keys(self, d: Any, allowed: set[str], where: str) -> dict[str, Any]:
        if not isinstance(d, dict):
            raise self.err(where or "top level", f"expected a table/mapping, got {type(d).__name__}")
        bad = sorted(set(d) - allowed)
        if bad:
            raise self.err(f"{where + '.' if where else ''}{bad[0]}", f"unknown key; valid keys here: {', '.join(sorted(allowed))}")
        return d

    def num(self, v: Any, key: str, integer: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
            raise self.err(key, f"{v!r} is not {'an integer' if integer else 'a number'}")
        return v

    def text(self, v: Any, key: str) -> str:
        if not isinstance(v, str | int) or isinstance(v, bool) or str(v) == "":
            raise self.err(key, f"{v!r} must be a non-empty string")
        return str(v)


def load_config(path: str | Path) -> WatchConfig:
    """Read and validate a watch config file (TOML or YAML).

    Relative ``db``, ``snapshots``, video-file and model paths are resolved against the
    config file's folder.

    Raises:
        UsageError: Naming the file and the offending key, with the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such config file; write one like docs/watch.md shows")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        else:
            raise UsageError(f"{p}: unknown config format {p.suffix!r}; use .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise UsageError(f"{p}: not valid {p.suffix[1:].upper()}: {e}") from None
    except Exception as e:  # yaml.YAMLError without importing yaml at module level
        if type(e).__module__.startswith("yaml"):
            raise UsageError(f"{p}: not valid YAML: {e}") from None
        raise
    return config_from_dict(data, str(p), base=p.parent)


def config_from_dict(data: Any, source: str = "<config>", base: Path | None = None) -> WatchConfig:
    """Validate a parsed config mapping (see :func:`load_config`)."""
    cx = _Ctx(source)
    data = cx.check_keys(data, _TOP_KEYS, "")

    def rel(v: str) -> str:
        """An existing path relative to the config file's folder, else ``v`` unchanged."""
        if base is None or "://" in v or v.isdigit() or v.startswith("py:") or Path(v).is_absolute():
            return v
        return str(base / v) if (base / v).exists() else v

    def out_path(v: str) -> str:
        """An output path (db, snapshots): relative to the config file's folder."""
        return v if base is None or Path(v).is_absolute() else str(base / v)

    defaults = cx.check_keys(data.get("defaults", {}), _DEFAULT_KEYS, "defaults")
    cams_raw = data.get("cameras")
    if not isinstance(cams_raw, list) or not cams_raw:
        raise cx.err("cameras", "needs at least one [[cameras]] entry with name, url and model")
    cameras = []
    for i, c in enumerate(cams_raw):
        where = f"cameras[{i}]"
        c = cx.check_keys(c, _CAMERA_KEYS, where)
        merged = {**defaults, **c}
        cameras.append(_camera(cx, merged, where, rel, frozenset(set(defaults) - set(c))))
    sinks_raw = cx.check_keys(data.get("sinks", {}), _SINK_KEYS, "sinks")
    sinks_kw = dict(sinks_raw)
    if "snapshots" in data:
        sinks_kw["snapshots"] = data["snapshots"]
    if sinks_kw.get("snapshots"):
        sinks_kw["snapshots"] = out_path(cx.text(sinks_kw["snapshots"], "snapshots"))
    for k in ("stdout", "mqtt_retain"):
        if k in sinks_kw and not isinstance(sinks_kw[k], bool):
            raise cx.err(f"sinks.{k}", f"{sinks_kw[k]!r} must be true or false")
    if "webhook_retries" in sinks_kw:
        cx.num(sinks_kw["webhook_retries"], "sinks.webhook_retries", integer=True)
    if "delivery_grace" in sinks_kw:
        sinks_kw["delivery_grace"] = float(cx.num(sinks_kw["delivery_grace"], "sinks.delivery_grace"))
    try:
        sinks = SinkConfig(**sinks_kw)
    except UsageError as e:
        raise cx.err("sinks", str(e)) from None
    severity = _severity(cx, data.get("severity", {}))
    db = out_path(cx.text(data.get("db", DEFAULT_DB), "db"))
    obs = data.get("observations", True)
    if not isinstance(obs, bool):
        raise cx.err("observations", f"{obs!r} must be true or false")
    ui_raw = cx.check_keys(data.get("ui", {}), {f.name for f in fields(UIConfig)}, "ui")
    try:
        ui = UIConfig.from_params(ui_raw, f"{source}: ui")
    except UsageError as e:
        raise UsageError(str(e) if str(e).startswith(source) else f"{source}: {e}") from None
    try:
        return WatchConfig(cameras=tuple(cameras), db=db, sinks=sinks, severity=severity, observations=obs, ui=ui)
    except UsageError as e:
        raise cx.err("cameras", str(e)) from None


def _camera(cx: _Ctx, c: dict[str, Any], where: str, rel: Any, inherited: frozenset[str] = frozenset()) -> CameraConfig:
    """One camera from its merged table; ``inherited``: keys that came from ``[defaults]``
    (a bad value there is reported as ``defaults.KEY``, not as the first camera's)."""

    def key(k: str) -> str:
        return f"defaults.{k}" if k in inherited else f"{where}.{k}"

    for req in ("name", "url", "model"):
        if req not in c:
            raise cx.err(f"{where}.{req}", "missing; every camera needs name, url and model (model may come from [defaults])")
    kw: dict[str, Any] = {"name": cx.text(c["name"], key("name")), "url": rel(cx.text(c["url"], key("url"))),
                          "model": rel(cx.text(c["model"], key("model")))}
    for k in ("backend", "device", "adapter", "prompt"):
        if k in c:
            kw[k] = cx.text(c[k], key(k))
    if "adapter" in kw:
        kw["adapter"] = rel(kw["adapter"])
    if "imgsz" in c:
        kw["imgsz"] = int(cx.num(c["imgsz"], key("imgsz"), integer=True))
    if "fps" in c:
        kw["fps"] = float(cx.num(c["fps"], key("fps")))
    if "scales" in c:
        v = c["scales"]
        if not isinstance(v, list) or not v:
            raise cx.err(key("scales"), f"{v!r} must be a list of numbers, e.g. [1.0, 0.8]")
        kw["scales"] = tuple(float(cx.num(x, key("scales"))) for x in v)
    if "loop" in c:
        if not isinstance(c["loop"], bool):
            raise cx.err(key("loop"), f"{c['loop']!r} must be true or false")
        kw["loop"] = c["loop"]
    if "classes" in c:
        v = c["classes"]
        try:
            ids = taxonomy.parse_classes([str(x) for x in v] if isinstance(v, list) else str(v))
        except UsageError as e:
            raise cx.err(key("classes"), str(e)) from None
        kw["classes"] = tuple(ids) if ids else None
    pol: dict[str, Any] = {}
    for k in _POLICY_KEYS & set(c):
        pol[k] = cx.num(c[k], key(k), integer=k in ("k", "n"))
    try:
        kw["policy"] = AlertPolicy(**pol)
    except UsageError as e:  # the message names the key; blame [defaults] when every alert key came from there
        raise cx.err("defaults" if pol and set(pol) <= inherited else where, str(e)) from None
    kw["baseline"] = _baseline(cx, c, key)
    zones = []
    zraw = c.get("zones", [])
    if not isinstance(zraw, list):
        raise cx.err(f"{where}.zones", "must be a list of {name, polygon, criticality} tables")
    for j, z in enumerate(zraw):
        zw = f"{where}.zones[{j}]"
        z = cx.check_keys(z, {"name", "polygon", "criticality"}, zw)
        if "name" not in z or "polygon" not in z:
            raise cx.err(zw, "needs name and polygon = [[x, y], ...] (pixels, or all in 0-1)")
        poly = z["polygon"]
        if (not isinstance(poly, list) or len(poly) < 3
                or not all(isinstance(pt, list | tuple) and len(pt) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pt) for pt in poly)):
            raise cx.err(f"{zw}.polygon", f"{poly!r} must be at least 3 [x, y] points")
        crit = z.get("criticality", "medium")
        if isinstance(crit, str):
            if crit not in CRITICALITY:
                raise cx.err(f"{zw}.criticality", f"{crit!r} is not one of {', '.join(CRITICALITY)} (or a number in [0, 1])")
            crit = CRITICALITY[crit]
        elif not isinstance(crit, int | float) or isinstance(crit, bool) or not 0.0 <= crit <= 1.0:
            raise cx.err(f"{zw}.criticality", f"{crit!r} must be low, medium, high, critical or a number in [0, 1]")
        zone = Zone(cx.text(z["name"], f"{zw}.name"), tuple((float(x), float(y)) for x, y in poly), float(crit))
        if zone.area((1, 1)) <= 0:
            raise cx.err(f"{zw}.polygon", "has zero area; list the corners in order")
        zones.append(zone)
    kw["zones"] = tuple(zones)
    try:
        return CameraConfig(**kw)
    except UsageError as e:
        raise cx.err(where, str(e)) from None


def _baseline(cx: _Ctx, c: dict[str, Any], key: Any) -> BaselineConfig:
    """The ``baseline*`` keys of a merged camera table; errors name the offending key."""
    bkw: dict[str, Any] = {}
    for k in sorted(_BASELINE_KEYS & set(c)):
        v = c[k]
        if k == "baseline" and v is False:  # YAML 1.1 reads `baseline: off` as false
            v = "off"
        if k == "baseline":
            bkw["mode"] = cx.text(v, key(k))
        else:
            field_name = k.removeprefix("baseline_")
            bkw[field_name] = cx.num(v, key(k), integer=field_name == "capture_samples")
        try:
            BaselineConfig(**bkw)  # one key at a time, so the error names the key that broke it
        except UsageError as e:
            raise cx.err(key(k), str(e)) from None
    return BaselineConfig(**bkw)


def _severity(cx: _Ctx, s: Any) -> SeverityRule:
    s = cx.check_keys(s, _SEVERITY_KEYS, "severity")
    kw: dict[str, Any] = {}
    if "weights" in s:
        w = cx.check_keys(s["weights"], {"area", "growth", "zone", "class"}, "severity.weights")
        for k, v in w.items():
            kw[f"w_{k}"] = float(cx.num(v, f"severity.weights.{k}"))
    for k in ("area_full", "growth_full", "growth_window", "default_criticality"):
        if k in s:
            kw[k] = float(cx.num(s[k], f"severity.{k}"))
    if "class_weights" in s:
        cw = cx.check_keys(s["class_weights"], set(s["class_weights"]) if isinstance(s["class_weights"], dict) else set(), "severity.class_weights")
        merged = dict(SeverityRule().class_weights)
        for k, v in cw.items():
            name = taxonomy.normalize_name(str(k))
            if name is None:
                raise cx.err(f"severity.class_weights.{k}", f"not a class; use one of {', '.join(taxonomy.NAMES)}")
            merged[name] = float(cx.num(v, f"severity.class_weights.{k}"))
        kw["class_weights"] = merged
    if "levels" in s:
        lv = cx.check_keys(s["levels"], {"medium", "high", "critical"}, "severity.levels")
        merged_l = dict(SeverityRule().levels)
        merged_l.update({k: float(cx.num(v, f"severity.levels.{k}")) for k, v in lv.items()})
        kw["levels"] = merged_l
    try:
        return SeverityRule(**kw)
    except UsageError as e:
        raise cx.err("severity", str(e)) from None


def config_from_flags(source: str | None = None, model: str | None = None, config: str | Path | None = None, *,
                      camera: Mapping[str, Any] | None = None, policy: Mapping[str, Any] | None = None,
                      sinks: Mapping[str, Any] | None = None, db: str | None = None,
                      capture_baseline: bool = False) -> WatchConfig:
    """The :class:`WatchConfig` of a ``synspill watch`` command line.

    Either ``config`` (a file, see :func:`load_config`) whose sinks and ``db`` the given
    ``sinks`` / ``db`` replace, or one camera watching ``source`` with ``model``. The
    mappings hold only what the user set; everything else keeps the config defaults.

    Args:
        source: Stream URL, video file, image folder or webcam index (one camera).
        model: Its model (see :class:`CameraConfig`).
        config: A TOML/YAML config file instead of ``source`` and ``model``.
        camera: :class:`CameraConfig` fields (``name``, ``backend``, ``device``, ``imgsz``,
            ``adapter``, ``prompt``, ``fps``, ``loop``; ``classes`` as names or ids; ``baseline``
            as the mode).
        policy: :class:`~synspill.watch.alerts.AlertPolicy` fields (``threshold``, ``k``, ...).
        sinks: :class:`SinkConfig` fields (``stdout``, ``webhook``, ``mqtt``, ``mqtt_prefix``, ``snapshots``).
        db: The event database.
        capture_baseline: Capture a new baseline for every camera (``--capture-baseline``:
            an action, so it is allowed with a file too).

    Raises:
        UsageError: Both or neither of ``config`` and ``source``; no ``model``; camera or
            policy settings next to a file (they belong in it); ``capture_baseline`` with
            another baseline mode.
    """
    camera, policy, sinks = dict(camera or {}), dict(policy or {}), dict(sinks or {})
    if config is not None:
        if source is not None or model is not None:
            raise UsageError("give either --config FILE or SOURCE --model M, not both (per-camera settings go in the file)")
        per_camera = sorted(camera) + sorted(policy)
        if per_camera:
            raise UsageError(f"--{per_camera[0].replace('_', '-')} is a per-camera setting; with --config put it in the file "
                             "([defaults] or [[cameras]])")
        cfg = load_config(config)
        if capture_baseline:
            cfg = dataclasses.replace(cfg, cameras=tuple(_capture(c) for c in cfg.cameras))
        return dataclasses.replace(cfg, sinks=dataclasses.replace(cfg.sinks, **sinks), db=db if db is not None else cfg.db)
    if source is None:
        raise UsageError("nothing to watch: give a SOURCE (URL, file, folder, webcam index) or --config FILE")
    if model is None:
        raise UsageError("--model is required with a SOURCE (weights, run folder, VLM folder or py:MODULE:FACTORY)")
    if "classes" in camera:
        ids = taxonomy.parse_classes(camera["classes"])
        camera["classes"] = tuple(ids) if ids else None
    name = camera.pop("name", None) or camera_name_for(source)
    mode = camera.pop("baseline", None)
    if capture_baseline and mode not in (None, "capture"):
        raise UsageError(f"--capture-baseline contradicts --baseline {mode}; give one of them")
    cam = CameraConfig.from_params(camera, "watch", name=name, url=source, model=model,
                                   policy=AlertPolicy.from_params(policy, "watch"),
                                   baseline=BaselineConfig(mode="capture" if capture_baseline else mode or "off"))
    cfg = WatchConfig(cameras=(cam,), sinks=SinkConfig.from_params(sinks, "watch"))
    return cfg if db is None else dataclasses.replace(cfg, db=db)


def _capture(cam: CameraConfig) -> CameraConfig:
    return dataclasses.replace(cam, baseline=dataclasses.replace(cam.baseline, mode="capture"))


def camera_name_for(url: str) -> str:
    """A camera name derived from a source (file stem, host, or ``webcam0``)."""
    if url.isdigit():
        return f"webcam{url}"
    if "://" in url:
        from urllib.parse import urlparse

        u = urlparse(url)
        raw = (u.hostname or "stream") + (f"-{u.port}" if u.port else "")
    else:
        raw = Path(url.rstrip("/")).stem or "camera"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in raw)
