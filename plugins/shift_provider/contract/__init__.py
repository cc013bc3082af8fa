"""The shift API's side of a migration as the runner reads it: codes, the migration model, status -> step.

No SQL and no Airflow here: the reference API and the shift-client use these too.
"""
