"""What the runner does on a MySQL cluster: quoted SQL text, the one lock-bounded DDL path, definitions.

Every statement the runner itself sends to a cluster is built or run here; the steps in
``engine`` call these instead of writing their own session settings or retries.
"""
