"""ShiftConsolePlugin: the console's app and views, registered with Airflow (``airflow.plugins``).

Every Airflow process loads plugins (the scheduler for listeners, each task for macros),
so this module stays import-light: the FastAPI app (and Airflow's API modules it needs)
is built the first time the api-server sends it a request (``LazyApp``).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from shift_provider.console.urls import MIGRATION_VIEW_ROUTE, SHIFT_PAGE_ROUTE, URL_PREFIX



class LazyApp:
    """An ASGI app that builds the console's FastAPI app on its first request."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            from shift_provider.console.app import create_app

            self.app = create_app()
        await self.app(scope, receive, send)


class ShiftConsolePlugin(AirflowPlugin):
    name = "shift_console"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "shift console"}]
    external_views = [
        {
            "name": "Migration",
            "href": URL_PREFIX + "/migration/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": MIGRATION_VIEW_ROUTE,
        },
        {
            "name": "Shift",
            "href": URL_PREFIX + "/migrations",
            "destination": "nav",
            "url_route": SHIFT_PAGE_ROUTE,
        },
    ]
