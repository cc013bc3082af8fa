"""shift_provider: run shift MySQL schema migrations from Apache Airflow.

Kept import-light: Airflow loads ``get_provider_info`` while it configures itself.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """What ``airflow providers list`` shows and which hooks/connection types we add."""
    return {
        "package-name": "shift-airflow-provider",
        "name": "shift",
        "description": "Run shift MySQL schema migrations (pt-online-schema-change) from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "shift",
                "external-doc-url": "https://github.com/square/shift",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "shift", "python-modules": ["shift_provider.hooks.shift_api", "shift_provider.hooks.cluster"]}
        ],
        "operators": [
            {"integration-name": "shift", "python-modules": [
                "shift_provider.operators.base", "shift_provider.operators.claim", "shift_provider.operators.await_human",
                "shift_provider.operators.prepare", "shift_provider.operators.copy", "shift_provider.operators.run_ddl",
                "shift_provider.operators.rename", "shift_provider.operators.pause", "shift_provider.operators.cancel",
            ]}
        ],
        "sensors": [{"integration-name": "shift", "python-modules": ["shift_provider.sensors.staged"]}],
        "triggers": [{"integration-name": "shift", "python-modules": [
            "shift_provider.triggers.staged", "shift_provider.triggers.migration_wait"]}],
        "extra-links": ["shift_provider.links.ShiftMigrationLink"],
        "connection-types": [
            {"hook-class-name": "shift_provider.hooks.shift_api.ShiftApiHook", "connection-type": "shift_api"},
        ],
    }
