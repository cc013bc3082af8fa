"""The Airflow UI's link from a step's task to the migration's page in the shift UI."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom


class ShiftMigrationLink(BaseOperatorLink):
    """Opens the migration in the shift UI (``shift_ui_url_template`` in the settings)."""

    name = "Shift migration"

    def get_link(self, operator, *, ti_key) -> str:
        from shift_provider.settings import get_settings

        migration_id = XCom.get_value(ti_key=ti_key, key="migration_id")
        if migration_id is None:
            return ""
        return get_settings().shift_ui_url_template.format(id=int(migration_id))
