"""Where the console lives: its mount point under the api-server and its routes in the Airflow UI.

Shared by the plugin (which registers them) and the app (which links to them).
"""

URL_PREFIX = "/shift-console"  # where the api-server mounts the console's app
MIGRATION_VIEW_ROUTE = "shift-migration"  # the run tab's route in the Airflow UI: .../runs/<run_id>/plugin/<this>
SHIFT_PAGE_ROUTE = "shift"  # the Shift page's route in the Airflow UI: /plugin/<this>
