"""shift-client: the human side of the shift API (no Airflow import, only requests)."""
