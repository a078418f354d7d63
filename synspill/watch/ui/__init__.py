"""The ``watch`` web dashboard: a live camera grid, events, actions, reports (Starlette).

- :mod:`~synspill.watch.ui.auth`: password/token hashing, signed sessions, CSRF.
- :mod:`~synspill.watch.ui.live`: the newest frame and detections of each camera.
- :mod:`~synspill.watch.ui.app`: routes and server-rendered pages (Jinja2, small JS poller).
- :mod:`~synspill.watch.ui.server`: running it (in ``watch``'s process or alone with ``synspill ui``).
"""
