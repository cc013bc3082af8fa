"""The migration steps' work, apart from Airflow: admission, copy, checksum, instant DDL, rename.

Operators in ``operators`` are the Airflow adapters that run these; the engine talks to the
cluster through ``mysql``, to pt-osc through ``ptosc`` and to shift through the API hook it is given.
"""
