"""The reference shift API as a FastAPI app: the Rails routes the runner and shift-client use.

Bodies may be JSON or form-encoded (Rails accepts both); query parameters are merged in,
as Rails does. Store calls run in the thread pool so concurrent requests really race
on SQLite, which is what the unstage guard must withstand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from shift_provider.contract.codes import FileType
from shift_provider.reference_api import page
from shift_provider.reference_api.store import ClusterAddress, Invalid, NotFound, Store

API = "/api/v1/migrations"
HUMAN_STEPS = ("approve", "unapprove", "start", "enqueue", "dequeue", "pause", "rename", "resume")


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "")
    if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise Invalid([f"Request body is not valid JSON: {exc.msg}."]) from None
        if not isinstance(data, dict):
            raise Invalid(["Request body must be a JSON object."])
        # Rails-style clients may nest the fields under "migration"
        if isinstance(data.get("migration"), dict):
            data = {**data, **data.pop("migration")}
        params.update(data)
    else:
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def create_app(db_path: str, clusters: Mapping[str, ClusterAddress | tuple[str, int]]) -> FastAPI:
    """An app serving one SQLite file; ``clusters`` maps cluster_name to its (host, port)."""
    registry = {name: addr if isinstance(addr, ClusterAddress) else ClusterAddress(addr[0], int(addr[1]))
                for name, addr in clusters.items()}
    store = Store(db_path, registry)
    app = FastAPI(title="shift reference API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"status": 404, "errors": ["Migration not found."], "message": str(exc)}, 404)

    @app.exception_handler(Invalid)
    async def _invalid(_: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"status": 400, "errors": exc.errors, "message": " ".join(exc.errors)}, 400)

    def call(fn, *args):
        return run_in_threadpool(fn, *args)

    # -- runner endpoints -------------------------------------------------------------------

    @app.get(f"{API}/staged")
    async def staged() -> Any:
        return await call(store.staged)

    @app.get(f"{API}/get_file")
    async def get_file(request: Request) -> Any:
        p = await _params(request)
        found = await call(store.get_file, p.get("migration_id"), p.get("file_type"))
        if found is None:
            return JSONResponse({"message": "File not found"}, 404)
        return found

    def runner_post(name: str, action, *fields: str):
        """A runner POST: the migration's ``id`` and the named fields, in that order, to the store."""
        async def endpoint(request: Request) -> Any:
            p = await _params(request)
            return await call(action, p.get("id"), *(p.get(field) for field in fields))

        endpoint.__name__ = name
        return endpoint

    for name, action, fields in (
        ("unstage", store.unstage, ()), ("next_step", store.next_step, ()), ("complete", store.complete, ()),
        ("cancel", store.runner_cancel, ()), ("offer", store.offer, ()), ("unpin_run_host", store.unpin_run_host, ()),
        ("fail", store.fail, ("error_message",)), ("error", store.error, ("error_message",)),
    ):
        app.post(f"{API}/{name}")(runner_post(name, action, *fields))

    def file_writer(name: str, append: bool):
        async def endpoint(request: Request) -> Any:
            p = await _params(request)
            return await call(store.write_file, p.get("migration_id"), p.get("file_type"), p.get("contents"), append)

        endpoint.__name__ = name
        return endpoint

    app.post(f"{API}/append_to_file")(file_writer("append_to_file", True))
    app.post(f"{API}/write_file")(file_writer("write_file", False))

    # -- human endpoints (shift UI / shift-client) -------------------------------------------

    @app.post(API)
    async def create(request: Request) -> Any:
        return await call(store.create, await _params(request))

    def human(step: str, store_step: str):
        async def endpoint(request: Request) -> Any:
            p = await _params(request)
            return await call(store.human_step, store_step, p.get("id"), p)

        endpoint.__name__ = f"human_{step}"
        return endpoint

    for step in HUMAN_STEPS:
        app.post(f"{API}/{step}")(human(step, step))
    app.post(f"{API}/cancel_cli")(human("cancel_cli", "cancel"))

    @app.post(f"{API}/delete")
    async def delete(request: Request) -> Any:
        p = await _params(request)
        await call(store.delete, p.get("id"), p)
        return {}

    @app.delete(API + "/{migration_id}")
    async def destroy(migration_id: str, request: Request) -> Any:
        await call(store.delete, migration_id, await _params(request))
        return {}

    @app.get(API + "/{migration_id}")
    async def show(migration_id: str) -> Any:
        return await call(store.show, migration_id)

    @app.put(API + "/{migration_id}")
    @app.patch(API + "/{migration_id}")
    async def update(migration_id: str, request: Request) -> Any:
        return await call(store.update, migration_id, await _params(request))

    # -- stand-in for the shift UI's migration page (the Airflow extra link points here) -------

    @app.get("/migrations/{migration_id}", response_class=HTMLResponse)
    async def ui_page(migration_id: str) -> Any:
        migration = await call(store.get, migration_id)
        log = await call(store.get_file, migration["id"], FileType.LOG)
        return HTMLResponse(page.render(migration, log["contents"] if log else None))

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "clusters": sorted(registry)}

    return app
