"""``shift-client``: the human side of the shift API from a terminal (create, approve, start ...).

Prints the migration as JSON; an API refusal is printed plainly on stderr with exit 1
(2 when the API cannot be reached). Verbs that need a lock_version read it first when
none is given, which is what a human at the UI effectively does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import requests

DEFAULT_URL = "http://localhost:3000/api/v1/"
LOCKED_VERBS = ("approve", "unapprove", "start", "enqueue", "dequeue", "rename", "resume", "delete")


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ShiftClient:
    """A thin requests wrapper: JSON bodies of string values, errors as ClientError."""

    def __init__(self, url: str, cert: str | None = None, key: str | None = None, ca: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.session = requests.Session()
        # per request, not on the session: requests lets REQUESTS_CA_BUNDLE override session.verify
        self.cert = ((cert, key) if key else cert) if cert else None
        self.verify: str | bool = ca or True
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        payload = None if body is None else {k: ("" if v is None else str(v)) for k, v in body.items()}
        try:
            response = self.session.request(method, url, json=payload, timeout=self.timeout,
                                            cert=self.cert, verify=self.verify)
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach the shift API at {url}: {exc}", exit_code=2) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            errors = []
            if isinstance(data, dict):
                errors = data.get("errors") or ([data["message"]] if data.get("message") else [])
            detail = " ".join(str(e) for e in errors) if errors else (response.text.strip()[:300] or response.reason)
            raise ClientError(f"{method} {path} failed ({response.status_code}): {detail}")
        if data is None:
            raise ClientError(f"{method} {path} answered non-JSON: {response.text[:200]!r}")
        return data

    def show(self, migration_id: str) -> dict[str, Any]:
        return self.request("GET", f"migrations/{migration_id}")

    def lock_version(self, migration_id: str) -> int:
        return int(self.show(migration_id)["migration"]["lock_version"])


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    parser.add_argument("--url", default=default(DEFAULT_URL),
                        help=f"shift API base URL ending in /api/v1/ (default {DEFAULT_URL})")
    parser.add_argument("--ssl-cert", default=default(None), help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--ssl-key", default=default(None), help="private key of --ssl-cert")
    parser.add_argument("--ssl-ca", default=default(None), help="CA bundle to verify the server with")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shift-client", description="Drive shift migrations through their human steps.")
    _common(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    create = verbs.add_parser("create", parents=[common], help="request a new migration")
    create.add_argument("--cluster", required=True, help="cluster name")
    create.add_argument("--database", required=True)
    create.add_argument("--ddl", required=True, help="the DDL statement (CREATE/DROP/ALTER TABLE/VIEW)")
    create.add_argument("--final-insert", default="", help="INSERT INTO ... run after the DDL")
    create.add_argument("--pr-url", default="", help="review link for the change")
    create.add_argument("--requestor", default="shift-client")
    create.add_argument("--custom-options", default="", help='JSON object, e.g. {"max_threads_running": "100"}')

    get = verbs.add_parser("get", parents=[common], help="show a migration")
    get.add_argument("id")

    def with_lock(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=[common], help=help_text)
        sub.add_argument("id")
        sub.add_argument("--lock-version", type=int, help="the lock_version you saw (read from the API if omitted)")
        return sub

    approve = with_lock("approve", "approve (1 -> 2)")
    approve.add_argument("--runtype", default="long", choices=["long", "short", "nocheckalter"])
    approve.add_argument("--approver", default="shift-client")
    with_lock("unapprove", "unapprove (2 -> 1)")
    start = with_lock("start", "start the copy (2 or 14 -> 3)")
    start.add_argument("--auto-run", action="store_true", help="rename without waiting for a human")
    with_lock("enqueue", "enqueue (2 -> 14)")
    with_lock("dequeue", "dequeue (14 -> 2)")
    with_lock("rename", "rename (4 -> 5)")
    resume = with_lock("resume", "resume a paused or errored copy (12/13 -> 3)")
    resume.add_argument("--auto-run", action="store_true")
    with_lock("delete", "delete a migration that has not started")
    for name, help_text in (("pause", "pause a running copy (3 -> 11)"), ("cancel", "cancel (-> 9)")):
        sub = verbs.add_parser(name, parents=[common], help=help_text)
        sub.add_argument("id")
    return parser


def run(args: argparse.Namespace) -> Any:
    client = ShiftClient(args.url, args.ssl_cert, args.ssl_key, args.ssl_ca)
    verb = args.verb
    if verb == "create":
        body = {"cluster_name": args.cluster, "database": args.database, "ddl_statement": args.ddl,
                "final_insert": args.final_insert, "pr_url": args.pr_url, "requestor": args.requestor}
        if args.custom_options:
            body["custom_options"] = args.custom_options
        return client.request("POST", "migrations", body)["migration"]
    if verb == "get":
        return client.show(args.id)["migration"]
    body: dict[str, Any] = {"id": args.id}
    if verb in LOCKED_VERBS:
        body["lock_version"] = args.lock_version if args.lock_version is not None else client.lock_version(args.id)
    if verb == "approve":
        body.update(runtype=args.runtype, approver=args.approver)
    if verb in ("start", "resume"):
        body["auto_run"] = "true" if args.auto_run else "false"
    if verb == "delete":
        client.request("POST", "migrations/delete", body)
        return {}
    endpoint = "cancel_cli" if verb == "cancel" else verb
    answer = client.request("POST", f"migrations/{endpoint}", body)
    return answer.get("migration", answer) if isinstance(answer, dict) else answer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except ClientError as exc:
        print(f"shift-client: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
