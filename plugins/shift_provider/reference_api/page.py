"""The reference server's migration page: a small HTML stand-in for the shift UI's page.

Why: the Airflow "Shift migration" link of every task points at the shift UI's page
of the migration; in the demo and the tests the reference server plays that UI, and
a raw JSON row is not something a DBA reads. The page shows what the shift UI does
for a running migration: status, the DDL, the copy progress, the table numbers (as
estimates, which information_schema's TABLE_ROWS is), the error and the log file.
Every value is HTML-escaped: DDL, names and the log are user or tool text.
"""

from __future__ import annotations

from html import escape
from typing import Any

from shift_provider.contract.codes import Status

_ROWS = (
    ("cluster", "cluster_name"), ("database", "database"), ("table", "table"), ("run host", "run_host"),
    ("requestor", "requestor"), ("approved by", "approved_by"), ("custom options", "custom_options"),
    ("final insert", "final_insert"), ("created", "created_at"), ("updated", "updated_at"),
)


def _status(value: Any) -> str:
    try:
        return f"{Status(int(value)).name.lower().replace('_', ' ')} ({int(value)})"
    except (TypeError, ValueError):
        return str(value)


def _text(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def _size(value: Any) -> str:
    return "-" if value is None else f"{int(value):,} bytes"


def _rows(value: Any) -> str:
    return "-" if value is None else f"about {int(value):,} (estimate)"


def render(migration: dict[str, Any], log: str | None) -> str:
    """The whole page for one migration row (``Store.get``) and its log file contents (or None)."""
    m = migration
    percent = m.get("copy_percentage")
    progress = "-" if percent is None else f"{float(percent):g}%"
    bar = "" if percent is None else (f'<progress max="100" value="{float(percent):g}">'
                                      f"{float(percent):g}%</progress> ")
    details = "".join(f"<tr><th>{escape(label)}</th><td>{escape(_text(m.get(key)))}</td></tr>" for label, key in _ROWS)
    numbers = "".join(
        f"<tr><th>{label}</th><td>{_rows(m.get(f'table_rows_{end}'))}</td><td>{_size(m.get(f'table_size_{end}'))}"
        f"</td><td>{_size(m.get(f'index_size_{end}'))}</td></tr>"
        for label, end in (("start", "start"), ("end", "end")))
    error = (f'<p class="error"><strong>error:</strong> {escape(str(m["error_message"]))}</p>'
             if m.get("error_message") else "")
    log_block = escape(log) if log else "(no log yet)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shift migration {int(m["id"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
th {{ text-align: left; padding-right: 1em; vertical-align: top; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; white-space: pre-wrap; }}
.error {{ color: #b00020; }}
</style></head>
<body>
<h1>Migration {int(m["id"])}: <span id="status">{escape(_status(m.get("status")))}</span></h1>
<p>staged: {"yes" if m.get("staged") else "no"}</p>
<h2>DDL</h2>
<pre id="ddl">{escape(str(m.get("ddl_statement") or ""))}</pre>
<h2>Progress</h2>
<p id="progress">{bar}copy {escape(progress)}</p>
{error}
<table>{details}</table>
<h2>Table</h2>
<table><tr><th></th><th>rows</th><th>data</th><th>indexes</th></tr>{numbers}</table>
<h2>Log</h2>
<pre id="log">{log_block}</pre>
<p><a href="/api/v1/migrations/{int(m["id"])}">JSON</a></p>
</body></html>
"""
