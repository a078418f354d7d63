"""Live CCTV spill monitoring: sources, the detection loop, alert rules, event store, sinks.

One file per concern (nothing heavy is imported here):

- :mod:`~synspill.watch.config`: cameras, zones, thresholds from a TOML/YAML file or flags.
- :mod:`~synspill.watch.sources`: RTSP/HTTP/file/webcam/folder readers keeping the newest frame.
- :mod:`~synspill.watch.tracker`: associating detections of one spill over time (k of n).
- :mod:`~synspill.watch.alerts`: severity rule, event life cycle, cooldown and re-alerts.
- :mod:`~synspill.watch.store`: the SQLite maintenance log (WAL, crash-safe).
- :mod:`~synspill.watch.sinks`: JSON lines, webhook, MQTT, annotated snapshots.
- :mod:`~synspill.watch.loop`: the detection loop tying them together.
- :mod:`~synspill.watch.report`: counts over time and heatmaps from the log.
- :mod:`~synspill.watch.suppress`: false-alarm regions where detections are dropped.
- :mod:`~synspill.watch.negatives`: crops of false alarms as hard negatives for fine-tuning.
"""

from enum import Enum

#: The event log's file name when none is given (``watch --db``, ``events --db``, config ``db``).
DEFAULT_DB = "events.sqlite"


class Severity(str, Enum):
    """An event's severity level, lowest first (see :mod:`synspill.watch.alerts`)."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class EventStatus(str, Enum):
    """Whether a spill event is still being seen."""

    open = "open"
    closed = "closed"


class ExportFormat(str, Enum):
    """File format of ``events export``."""

    csv = "csv"
    json = "json"


class Bucket(str, Enum):
    """Time bucket of the counts in ``events report``."""

    hour = "hour"
    day = "day"
    week = "week"
    month = "month"


class BaselineMode(str, Enum):
    """How a camera gets its clean-scene reference (see :mod:`synspill.watch.baseline`)."""

    off = "off"
    learn = "learn"
    capture = "capture"
