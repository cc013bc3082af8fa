"""The DBA's live console in the Airflow UI: a "Migration" view on each run and a "Shift" page.

Airflow 3.3's plugin interface (``ShiftConsolePlugin``, an ``airflow.plugins`` entry point)
mounts this package's FastAPI app under the api-server at ``/shift-console`` and adds two
external views, shown by the UI in an iframe: "Migration" on every DAG run (the run's
migration: shift status, step, progress bar, ETA, what it waits for, the next human action,
links) and "Shift" in the navigation (every migration in flight). Both pages refresh
themselves from JSON endpoints every few seconds, while the copy runs; every route is
behind Airflow's own auth (the UI's ``_token`` cookie or a bearer token).

* ``summary``: what a DBA is told, from a run's facts and shift's answer (no I/O).
* ``facts``: a run's facts from Airflow's metadata database (run, task states, XComs).
* ``shift_status``: shift's answer for a migration, cached for a moment, never raising.
* ``app``: the FastAPI app (pages and JSON, each behind Airflow's auth).
* ``urls``: the mount point and the UI routes (shared by the plugin and the app).
* ``plugin``: the Airflow plugin registering the app and the views.
"""
