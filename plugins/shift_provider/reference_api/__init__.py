"""A reference shift API (the Rails API's runner and CLI endpoints) for tests and demos.

Light on purpose: FastAPI + SQLite, no Airflow import, so it starts in well under a second.
Entry points: ``app.create_app(db_path, clusters)`` and the ``shift-api-server`` CLI.
"""
