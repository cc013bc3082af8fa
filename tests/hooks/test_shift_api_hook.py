"""ShiftApiHook against real local HTTP servers: retries, bounds, wire format, mTLS, ambiguous unstage."""

from __future__ import annotations

import datetime
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from shift_provider.exceptions import ShiftApiError
from shift_provider.hooks.shift_api import ShiftApiHook
from shift_provider.settings import Settings
from tests.support.shift_api import ShiftApiServer, shift_client

FAST = {"retry_delay": 0.05, "max_retry_seconds": 10.0, "timeout": 5.0}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


# Scripted answers: ("json", status, payload) | ("sleep", seconds, then) | ("drop",) |
# ("forward",) | ("forward_then", then) where then is another answer.
class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, default=("json", 200, []), upstream: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default
        self.script: list = []
        self.script_paths: tuple[str, ...] | None = None  # only these paths consume the script
        self.upstream = upstream
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v1/"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def calls(self, path_end: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_end)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        server: ScriptedServer = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urlparse(self.path)
        with server.lock:
            server.requests.append(Recorded(self.command, parsed.path, parse_qs(parsed.query),
                                            dict(self.headers), body))
            scripted = server.script_paths is None or parsed.path.endswith(server.script_paths)
            answer = server.script.pop(0) if scripted and server.script else ("forward",) \
                if server.upstream else server.default
        self._answer(answer, body)

    def _answer(self, answer, body: bytes) -> None:
        kind = answer[0]
        if kind == "json":
            self._send(answer[1], json.dumps(answer[2]).encode())
        elif kind == "sleep":
            time.sleep(answer[1])
            self._answer(answer[2], body)
        elif kind == "drop":
            self.close_connection = True  # no answer at all: the client sees the connection close
        elif kind == "forward":
            status, payload = self._forward(body)
            self._send(status, payload)
        elif kind == "forward_then":
            self._forward(body)  # the real server processes it ...
            self._answer(answer[1], body)  # ... and the client gets something else
        else:  # pragma: no cover
            raise AssertionError(answer)

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        upstream = self.server.upstream.rstrip("/") + self.path[len("/api/v1"):]  # type: ignore[attr-defined]
        response = requests.request(self.command, upstream, data=body or None, timeout=10,
                                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        return response.status_code, response.content

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def use_url(monkeypatch):
    def set_url(url: str) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", url)

    return set_url


# -- retries and bounds ------------------------------------------------------------------------

def test_retries_through_503_then_answers(use_url):
    with ScriptedServer() as server:
        server.script = [("json", 503, {"error": "busy"}), ("json", 503, {"error": "busy"}),
                         ("json", 200, [{"id": 7}])]
        use_url(server.url)
        assert ShiftApiHook(**FAST).staged() == [{"id": 7}]
        assert len(server.calls("migrations/staged")) == 3


def test_gives_up_after_its_attempt_bound_with_a_clear_error(use_url):
    with ScriptedServer(default=("json", 502, {"error": "bad gateway"})) as server:
        use_url(server.url)
        with pytest.raises(ShiftApiError) as info:
            ShiftApiHook(retry_limit=3, retry_delay=0.05).fail(12, "boom")
        assert len(server.calls("migrations/fail")) == 3
        message = str(info.value)
        assert "shift API call fail (POST " in message and "migrations/fail" in message
        assert "gave up after 3 attempt(s)" in message and info.value.status_code == 502


def test_gives_up_after_its_time_bound(use_url):
    with ScriptedServer(default=("json", 503, {})) as server:
        use_url(server.url)
        started = time.monotonic()
        with pytest.raises(ShiftApiError, match="gave up after"):
            ShiftApiHook(retry_limit=1000, retry_delay=0.1, max_retry_seconds=1.0).staged()
        assert time.monotonic() - started < 3
        assert 2 <= len(server.requests) < 10


def test_connection_refused_is_retried_then_reported(use_url):
    from tests.support.mariadb import free_port

    use_url(f"http://127.0.0.1:{free_port()}/api/v1/")
    with pytest.raises(ShiftApiError, match=r"call staged .* gave up after 2 attempt\(s\)"):
        ShiftApiHook(retry_limit=2, retry_delay=0.05).staged()


def test_timeout_is_retried(use_url):
    with ScriptedServer() as server:
        # The timeout is generous for a loaded machine (the second answer must come within it), the
        # sleep far longer: the first attempt times out, the second is answered.
        server.script = [("sleep", 4, ("json", 200, [])), ("json", 200, [{"id": 1}])]
        use_url(server.url)
        assert ShiftApiHook(retry_limit=3, retry_delay=0.05, timeout=2).staged() == [{"id": 1}]
        assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_no_retry_on_4xx(use_url, status):
    with ScriptedServer(default=("json", status, {"status": status, "errors": ["Invalid action."]})) as server:
        use_url(server.url)
        with pytest.raises(ShiftApiError) as info:
            ShiftApiHook(**FAST).next_step(3)
        assert len(server.requests) == 1
        assert info.value.status_code == status and info.value.errors == ["Invalid action."]
        assert "call next_step" in str(info.value) and "Invalid action." in str(info.value)


# -- wire format -------------------------------------------------------------------------------

def test_posts_json_strings_and_gets_query_params(use_url):
    with ScriptedServer(default=("json", 200, {"id": 5})) as server:
        use_url(server.url)
        hook = ShiftApiHook(**FAST)
        hook.fail(5, "boom")
        hook.update(5, table_rows_start=10, copy_percentage=4.5, run_host=None)
        hook.append_to_file(5, "line\n")
        hook.write_file(5, "{}")
        server.script = [("json", 404, {"message": "File not found"}), ("json", 200, {"contents": "log"})]
        assert hook.get_file(5, 1) is None
        assert hook.get_file(5, 0) == "log"
        fail, update, append, write, get_none, get_log = server.requests
        assert (fail.method, fail.path) == ("POST", "/api/v1/migrations/fail")
        assert fail.headers["Content-Type"] == "application/json"
        assert json.loads(fail.body) == {"id": "5", "error_message": "boom"}
        assert (update.method, update.path) == ("PUT", "/api/v1/migrations/5")
        assert json.loads(update.body) == {"table_rows_start": "10", "copy_percentage": "4.5", "run_host": ""}
        assert json.loads(append.body) == {"migration_id": "5", "file_type": "0", "contents": "line\n"}
        assert json.loads(write.body) == {"migration_id": "5", "file_type": "1", "contents": "{}"}
        assert (get_none.method, get_none.path, get_none.query, get_none.body) == (
            "GET", "/api/v1/migrations/get_file", {"migration_id": ["5"], "file_type": ["1"]}, b"")
        assert get_log.query["file_type"] == ["0"]


def test_unstage_empty_answer_is_stolen(use_url):
    with ScriptedServer(default=("json", 200, {})) as server:
        use_url(server.url)
        claim = ShiftApiHook(**FAST).unstage(9)
        assert claim.stolen and claim.payload is None and not claim.uncertain
        assert len(server.requests) == 1


@pytest.mark.parametrize("form", ["uri", "http_json", "base_url_json", "settings_file"])
def test_connection_forms_resolve_the_base_url(monkeypatch, form):
    with ScriptedServer() as server:
        port = server.server_address[1]
        conn_id, settings = "shift_api", None
        if form == "uri":
            monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", server.url)
        elif form == "http_json":
            monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}))
        elif form == "base_url_json":
            monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps(
                {"conn_type": "shift_api", "extra": {"base_url": server.url.rstrip("/"), "X-Shift-Test": "1"}}))
        else:
            conn_id, settings = "shift_api_not_defined", Settings(rest_api=server.url)
        hook = ShiftApiHook(conn_id, settings=settings, **FAST)
        assert hook.staged() == []
        assert hook.base_url == server.url
        assert server.requests[0].path == "/api/v1/migrations/staged"
        if form == "base_url_json":  # other extra keys are headers, ours are not
            assert server.requests[0].headers.get("X-Shift-Test") == "1"
            assert "base_url" not in {k.lower() for k in server.requests[0].headers}


# -- mutual TLS --------------------------------------------------------------------------------

def _make_pki(directory: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem, cert, private):
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("shift test CA")).issuer_name(name("shift test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    write("ca", ca, ca_key)

    def leaf(stem, cn, usage, san=None):
        private = key()
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        write(stem, builder.sign(ca_key, hashes.SHA256()), private)

    leaf("server", "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    leaf("client", "shift-runner", ExtendedKeyUsageOID.CLIENT_AUTH)
    return {stem: str(directory / f"{stem}.pem") for stem in ("ca", "server", "client")} | {
        f"{stem}_key": str(directory / f"{stem}.key") for stem in ("server", "client")}


def test_https_with_a_client_certificate(tmp_path, monkeypatch):
    pki = _make_pki(tmp_path)
    with ShiftApiServer({"primary": ("127.0.0.1", 3306)}, ssl=(pki["server"], pki["server_key"], pki["ca"])) as api:
        assert api.url.startswith("https://")
        monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps({"conn_type": "shift_api", "extra": {
            "base_url": api.url, "cert": pki["client"], "key": pki["client_key"], "ca": pki["ca"]}}))
        hook = ShiftApiHook(**FAST)
        assert hook.staged() == []

        # the human side over the same mutual TLS, with the real shift-client
        created = shift_client("--ssl-cert", pki["client"], "--ssl-key", pki["client_key"], "--ssl-ca", pki["ca"],
                               "create", "--cluster", "primary", "--database", "db",
                               "--ddl", "ALTER TABLE t ADD COLUMN c INT", url=api.url)
        assert created.returncode == 0, created.stderr
        mid = json.loads(created.stdout)["id"]
        assert [m["id"] for m in hook.staged()] == [mid]
        assert hook.unstage(mid).stolen is False

        # no client certificate: the server refuses the handshake, the hook reports it
        monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps(
            {"conn_type": "shift_api", "extra": {"base_url": api.url, "ca": pki["ca"]}}))
        with pytest.raises(ShiftApiError, match="call staged"):
            ShiftApiHook(retry_limit=1, retry_delay=0.05).staged()
        refused = shift_client("--ssl-ca", pki["ca"], "get", str(mid), url=api.url)
        assert refused.returncode == 2 and "cannot reach" in refused.stderr

        # a server we do not trust: verification fails even with our client certificate, and a
        # TLS failure is not retried (it will not heal)
        monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps({"conn_type": "shift_api", "extra": {
            "base_url": api.url, "cert": pki["client"], "key": pki["client_key"]}}))
        with pytest.raises(ShiftApiError, match=r"gave up after 1 attempt\(s\).*CERTIFICATE_VERIFY_FAILED"):
            ShiftApiHook(retry_limit=5, retry_delay=0.05).staged()

        # a certificate file that is not there is a clear error, not an OSError from deep inside requests
        monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", json.dumps({"conn_type": "shift_api", "extra": {
            "base_url": api.url, "cert": str(tmp_path / "missing.pem"), "key": pki["client_key"], "ca": pki["ca"]}}))
        with pytest.raises(ShiftApiError, match="call staged .* failed: .*missing.pem"):
            ShiftApiHook(retry_limit=5, retry_delay=0.05).staged()


# -- ambiguous unstage -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_api():
    """One real shift-api-server behind the scripted proxy (no MariaDB needed for claims)."""
    with ShiftApiServer({"primary": ("127.0.0.1", 3306)}) as running:
        yield running


@pytest.mark.parametrize("failure", [
    ("forward_then", ("drop",)),
    ("forward_then", ("json", 503, {"error": "proxy lost the answer"})),
    ("forward_then", ("sleep", 4, ("drop",))),
], ids=["processed_then_dropped", "processed_then_503", "processed_then_timeout"])
def test_ambiguous_unstage_that_was_processed_is_not_a_win(real_api, use_url, failure):
    mid = real_api.create("ALTER TABLE t ADD COLUMN c INT")["id"]
    with ScriptedServer(upstream=real_api.url) as proxy:
        proxy.script_paths = ("migrations/unstage",)
        proxy.script = [failure]
        use_url(proxy.url)
        claim = ShiftApiHook(retry_limit=3, retry_delay=0.05, timeout=2).unstage(mid)
        assert claim.stolen and claim.uncertain and claim.payload is None
        assert len(proxy.calls("migrations/unstage")) == 1, "never re-sent once it was no longer staged"
        assert proxy.calls(f"migrations/{mid}"), "it re-read the migration before deciding"
    assert real_api.migration(mid)["staged"] is False  # the server did process it


def test_ambiguous_unstage_that_was_not_processed_is_retried_and_wins(real_api, use_url):
    mid = real_api.create("ALTER TABLE t ADD COLUMN c INT")["id"]
    with ScriptedServer(upstream=real_api.url) as proxy:
        proxy.script_paths = ("migrations/unstage",)
        proxy.script = [("drop",), ("json", 503, {"error": "not yet"})]  # neither reaches the real server
        use_url(proxy.url)
        claim = ShiftApiHook(retry_limit=5, retry_delay=0.05, timeout=2).unstage(mid)
        assert not claim.stolen and claim.payload["id"] == mid and claim.payload["staged"] is False
        assert len(proxy.calls("migrations/unstage")) == 3
        assert len(proxy.calls(f"migrations/{mid}")) == 2  # one re-read per ambiguous failure
    assert real_api.migration(mid)["staged"] is False


def test_ambiguous_unstage_gives_up_while_still_staged(real_api, use_url):
    mid = real_api.create("ALTER TABLE t ADD COLUMN c INT")["id"]
    with ScriptedServer(upstream=real_api.url) as proxy:
        proxy.script_paths = ("migrations/unstage",)
        proxy.script = [("drop",)] * 10
        use_url(proxy.url)
        with pytest.raises(ShiftApiError, match="still staged"):
            ShiftApiHook(retry_limit=3, retry_delay=0.05).unstage(mid)
        assert len(proxy.calls("migrations/unstage")) == 3
    assert real_api.migration(mid)["staged"] is True
