"""The console's FastAPI app, mounted by the api-server at ``/shift-console``.

Routes (every one behind Airflow's auth: the UI's ``_token`` cookie, which the iframe
and its fetches send, or an ``Authorization: Bearer`` token; without one, 401):

* ``GET /migration/{dag_id}/{run_id}``: the Migration view (HTML, refreshes itself).
* ``GET /api/migration/{dag_id}/{run_id}``: what it shows, as JSON (``summary.summarize``).
* ``GET /migrations``: the Shift page, every migration in flight (HTML).
* ``GET /api/migrations``: its list, as JSON.
* ``GET /static/console.js``: the pages' shared script (signed-in users only, like the rest).

Authorization is Airflow's own: reading a run's console needs what the REST API asks to
read the run and its XComs (``requires_access_dag``), for that DAG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from shift_provider.console import facts as run_facts
from shift_provider.console import shift_status
from shift_provider.console.urls import MIGRATION_VIEW_ROUTE, SHIFT_PAGE_ROUTE, URL_PREFIX
from shift_provider.console.summary import RunFacts, summarize

PAGES = Path(__file__).with_name("pages")
NO_STORE = {"Cache-Control": "no-store"}


async def _user(request: Request):
    """Airflow's authentication: the signed-in user (401 without a valid session cookie or bearer token)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


async def _require(request: Request, dag_id: str | None) -> None:
    """Airflow's authentication, then its authorization to read the DAG's runs and XComs (401/403)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    user = await _user(request)
    for entity in (DagAccessEntity.RUN, DagAccessEntity.XCOM):
        await run_in_threadpool(requires_access_dag("GET", entity, param_dag_id=dag_id), request, user)


async def signed_in(request: Request) -> None:
    """Airflow's authentication alone (401 without it): for what holds no data of any DAG."""
    await _user(request)


async def may_read_run(request: Request) -> None:
    await _require(request, None)  # the dag_id of the path


async def may_read_migrations(request: Request) -> None:
    await _require(request, run_facts.DAG_ID)


def _airflow_root(request: Request) -> str:
    """Where the Airflow UI is served (the api-server's root path, without this app's prefix)."""
    root = str(request.scope.get("root_path") or "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def _view(request: Request, facts: RunFacts) -> dict[str, Any]:
    answer = shift_status.answer(facts.migration_id)
    view = summarize(facts, answer, shift_status.shift_url(facts.migration_id))
    root = _airflow_root(request)
    run = f"{root}/dags/{quote(facts.dag_id, safe='')}/runs/{quote(facts.run_id, safe='')}"
    view["links"].update({"run": run, "view": f"{run}/plugin/{MIGRATION_VIEW_ROUTE}",
                          "shift_page": f"{root}/plugin/{SHIFT_PAGE_ROUTE}"})
    return view


def _session():
    from airflow.utils.session import create_session

    return create_session(scoped=False)


def create_app() -> FastAPI:
    app = FastAPI(title="shift console", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/migration/{dag_id}/{run_id}", dependencies=[Depends(may_read_run)])
    def migration_page(dag_id: str, run_id: str) -> FileResponse:
        return FileResponse(PAGES / "migration.html", media_type="text/html", headers=NO_STORE)

    @app.get("/api/migration/{dag_id}/{run_id}", dependencies=[Depends(may_read_run)])
    def migration_json(request: Request, dag_id: str, run_id: str) -> JSONResponse:
        with _session() as session:
            facts = run_facts.run_facts(session, dag_id, run_id)
        if facts is None:
            raise HTTPException(404, f"no run {run_id} of DAG {dag_id}")
        if facts.migration_id is None:
            raise HTTPException(404, f"run {run_id} of DAG {dag_id} is not about a shift migration "
                                     "(its conf names no migration id)")
        return JSONResponse(_view(request, facts), headers=NO_STORE)

    @app.get("/static/console.js", dependencies=[Depends(signed_in)])
    def console_script() -> FileResponse:
        return FileResponse(PAGES / "console.js", media_type="text/javascript", headers=NO_STORE)

    @app.get("/migrations", dependencies=[Depends(may_read_migrations)])
    def migrations_page() -> FileResponse:
        return FileResponse(PAGES / "migrations.html", media_type="text/html", headers=NO_STORE)

    @app.get("/api/migrations", dependencies=[Depends(may_read_migrations)])
    def migrations_json(request: Request) -> JSONResponse:
        with _session() as session:
            runs = run_facts.runs_in_flight(session)
        views = [_view(request, facts) for facts in runs if facts.migration_id is not None]
        return JSONResponse({"migrations": views, "total": len(views)}, headers=NO_STORE)

    return app
