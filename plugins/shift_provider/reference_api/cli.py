"""``shift-api-server``: run the reference shift API under uvicorn."""

from __future__ import annotations

import argparse
import ssl
import sys

from shift_provider.reference_api.store import ClusterAddress


def _cluster(value: str) -> tuple[str, ClusterAddress]:
    name, sep, address = value.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not name or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {value!r}")
    return name, ClusterAddress(host.strip("[]"), int(port))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shift-api-server",
        description="Reference shift API (runner + shift-client endpoints under /api/v1/), backed by SQLite.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port to listen on (default 3000)")
    parser.add_argument("--db", default="shift.sqlite3", help="SQLite file holding migrations and files")
    parser.add_argument("--cluster", action="append", type=_cluster, default=[], metavar="NAME=HOST:PORT",
                        help="a MySQL cluster migrations may target (repeatable)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="private key of --ssl-certfile")
    parser.add_argument("--ssl-ca-certs", help="CA bundle; when given, clients must present a certificate it signed")
    parser.add_argument("--graceful-timeout", type=float, default=2.0,
                        help="seconds to let open connections finish on shutdown (default 2)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("shift-api-server: --ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    if args.ssl_ca_certs and not args.ssl_certfile:
        print("shift-api-server: --ssl-ca-certs needs --ssl-certfile/--ssl-keyfile", file=sys.stderr)
        return 2

    import uvicorn

    from shift_provider.reference_api.app import create_app

    app = create_app(args.db, dict(args.cluster))
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, ssl_ca_certs=args.ssl_ca_certs,
        ssl_cert_reqs=ssl.CERT_REQUIRED if args.ssl_ca_certs else ssl.CERT_NONE,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
