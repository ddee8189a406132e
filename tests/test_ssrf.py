"""Tests for the SSRF guard of webhook deliveries.

Network traffic stays on this machine: DNS lookups are made only for "localhost", and
the HTTP and HTTPS receivers listen on 127.0.0.1 on ephemeral ports.
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path

import httpx
import pytest

from connex.webhooks.ssrf import (
    ParsedTarget,
    UnsafeURL,
    check_url,
    create_client,
    forbidden_reason,
    is_forbidden,
    pinned_request,
    resolve_and_check,
    send_pinned,
)

LOOPBACK_EXEMPT = [IPv4Network("127.0.0.1/32")]
HOOK_HOST = "hooks.example.test"

FORBIDDEN_ADDRESSES = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "'this network'"),
    ("0.1.2.3", "'this network'"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.88.99.1", "6to4 relay"),
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fd00::1", "unique local"),
    ("fc00::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001::1", "Teredo"),
    ("2001:2::1", "IETF protocol assignment"),
    ("100::1", "outside IPv6 global unicast"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    # IPv6 forms that embed a forbidden IPv4 address
    ("::ffff:127.0.0.1", "127.0.0.1, a loopback"),
    ("::ffff:10.0.0.1", "10.0.0.1, a private"),
    ("::ffff:169.254.169.254", "169.254.169.254, a link-local"),
    ("64:ff9b::a00:1", "10.0.0.1, a private"),
    ("64:ff9b::7f00:1", "127.0.0.1, a loopback"),
    ("64:ff9b:1::5db8:d822", "local-use NAT64"),
    ("2002:7f00:1::", "127.0.0.1, a loopback"),
    ("2002:a00:1::1", "10.0.0.1, a private"),
]

ALLOWED_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "2a00:1450:4001:800::200e",
    "64:ff9b::5db8:d822",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::1",
]


@pytest.mark.parametrize(("address", "category"), FORBIDDEN_ADDRESSES)
def test_forbidden_address(address: str, category: str) -> None:
    parsed = ip_address(address)

    assert is_forbidden(parsed)
    reason = forbidden_reason(parsed)
    assert reason is not None
    assert category in reason


@pytest.mark.parametrize("address", ALLOWED_ADDRESSES)
def test_allowed_address(address: str) -> None:
    parsed = ip_address(address)

    assert not is_forbidden(parsed)
    assert forbidden_reason(parsed) is None


def test_exemption_allows_only_listed_network() -> None:
    assert not is_forbidden(IPv4Address("127.0.0.1"), LOOPBACK_EXEMPT)
    assert is_forbidden(IPv4Address("127.0.0.2"), LOOPBACK_EXEMPT)
    assert is_forbidden(IPv6Address("::1"), LOOPBACK_EXEMPT)
    assert is_forbidden(IPv4Address("10.0.0.1"), LOOPBACK_EXEMPT)


def test_exemption_applies_to_embedded_ipv4() -> None:
    assert not is_forbidden(IPv6Address("::ffff:127.0.0.1"), LOOPBACK_EXEMPT)
    assert is_forbidden(IPv6Address("::ffff:127.0.0.2"), LOOPBACK_EXEMPT)


def test_exemption_of_ipv6_network() -> None:
    exempt = [IPv6Network("fd00:1234::/32")]

    assert not is_forbidden(IPv6Address("fd00:1234::5"), exempt)
    assert is_forbidden(IPv6Address("fd00:1235::5"), exempt)


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("ftp://hooks.example.com/in", True, "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", True, "scheme 'file' is not allowed"),
        ("gopher://hooks.example.com/", False, "scheme 'gopher' is not allowed"),
        ("http://hooks.example.com/in", False, "plain http is not allowed"),
        ("//hooks.example.com/in", False, "no scheme"),
        ("/relative/path", False, "no scheme"),
        ("https:///in", False, "no host"),
        ("https://hooks.example.com:0/in", False, "port 0 is outside 1..65535"),
        ("https://hooks.example.com:65536/in", False, "port 65536 is outside 1..65535"),
        ("https://hooks.example.com:http/in", False, "could not be parsed"),
        ("https://[fe80::1%25eth0]/in", False, "zone IDs"),
        ("https://hooks.example.com./in", False, "trailing dot"),
        ("https://bad..example.com/in", False, "label"),
        ("https://-bad.example.com/in", False, "label"),
        ("https://127.1/in", False, "dotted decimal"),
        ("https://0x7f000001/in", False, "dotted decimal"),
        ("https://2130706433/in", False, "dotted decimal"),
        ("https://127.0.0.1/in", False, "loopback"),
        ("https://[::1]/in", False, "loopback"),
        ("https://[::ffff:169.254.169.254]/in", False, "link-local"),
        ("https://169.254.169.254/latest/meta-data", False, "link-local"),
    ],
)
def test_check_url_rejects(url: str, allow_http: bool, message: str) -> None:
    with pytest.raises(UnsafeURL, match=re.escape(message)):
        check_url(url, allow_http=allow_http)


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:hunter2@hooks.example.com/in",
        "https://alice@hooks.example.com/in",
        "https://:hunter2@hooks.example.com/in",
        "https://alice:hunter2@127.0.0.1/in",
    ],
)
def test_check_url_rejects_userinfo(url: str) -> None:
    with pytest.raises(UnsafeURL, match="username or password") as caught:
        check_url(url, allow_http=False)

    assert "alice" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_check_url_error_hides_path_and_query() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://10.0.0.1/services/T0K3N?sig=s3cr3t", allow_http=False)

    message = str(caught.value)
    assert "10.0.0.1" in message
    assert "T0K3N" not in message
    assert "s3cr3t" not in message


def test_check_url_parse_error_is_not_chained() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://alice:hunter2@hooks.example.com:bad/in", allow_http=False)

    assert caught.value.__context__ is None
    assert "hunter2" not in str(caught.value)


def test_check_url_accepts_https() -> None:
    target = check_url("https://Hooks.Example.com/in/v1?token=abc", allow_http=False)

    assert target.scheme == "https"
    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.raw_path == "/in/v1?token=abc"
    assert target.ip_literal is None
    assert target.host_header == "hooks.example.com"


def test_check_url_accepts_http_when_allowed() -> None:
    target = check_url("http://hooks.example.com:8080/in", allow_http=True)

    assert target.scheme == "http"
    assert target.port == 8080
    assert target.host_header == "hooks.example.com:8080"


def test_check_url_encodes_idna_host() -> None:
    target = check_url("https://bücher.example/in", allow_http=False)

    assert target.host == "xn--bcher-kva.example"


def test_check_url_public_ipv6_literal() -> None:
    target = check_url("https://[2606:4700::1111]:8443/in", allow_http=False)

    assert target.ip_literal == IPv6Address("2606:4700::1111")
    assert target.host == "2606:4700::1111"
    assert target.host_header == "[2606:4700::1111]:8443"


def test_check_url_exempt_loopback() -> None:
    target = check_url("http://127.0.0.1:8080/in", allow_http=True, exempt_networks=LOOPBACK_EXEMPT)

    assert target.ip_literal == IPv4Address("127.0.0.1")
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("http://127.0.0.2:8080/in", allow_http=True, exempt_networks=LOOPBACK_EXEMPT)


def test_parsed_target_repr_hides_path() -> None:
    target = check_url("https://hooks.example.com/services/T0K3N?sig=s3cr3t", allow_http=False)

    assert "T0K3N" not in repr(target)
    assert "s3cr3t" not in repr(target)
    assert "hooks.example.com" in repr(target)


@pytest.mark.asyncio
async def test_resolve_localhost_rejected() -> None:
    with pytest.raises(UnsafeURL, match="loopback"):
        await resolve_and_check("localhost", 443)


@pytest.mark.asyncio
async def test_resolve_localhost_exempt() -> None:
    exempt = [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]

    addresses = await resolve_and_check("localhost", 443, exempt_networks=exempt)

    assert addresses
    assert all(any(address in network for network in exempt) for address in addresses)


@pytest.mark.asyncio
async def test_resolve_ip_literal_without_dns() -> None:
    addresses = await resolve_and_check("93.184.216.34", 443)

    assert addresses == [IPv4Address("93.184.216.34")]
    with pytest.raises(UnsafeURL, match="private"):
        await resolve_and_check("10.0.0.1", 443)
    with pytest.raises(UnsafeURL, match=re.escape("10.0.0.1, a private")):
        await resolve_and_check("64:ff9b::a00:1", 443)


@pytest.mark.asyncio
async def test_resolve_exemption_is_exact() -> None:
    addresses = await resolve_and_check("127.0.0.1", 80, exempt_networks=LOOPBACK_EXEMPT)

    assert addresses == [IPv4Address("127.0.0.1")]
    with pytest.raises(UnsafeURL):
        await resolve_and_check("127.0.0.2", 80, exempt_networks=LOOPBACK_EXEMPT)


def test_pinned_request_url_and_headers() -> None:
    target = check_url("https://hooks.example.test:8443/in?token=abc", allow_http=False)

    request = pinned_request(
        "POST",
        target,
        IPv6Address("2606:4700::1111"),
        headers={"Host": "attacker.example", "Content-Type": "application/json"},
        content=b"{}",
    )

    assert str(request.url) == "https://[2606:4700::1111]:8443/in?token=abc"
    assert request.headers["Host"] == "hooks.example.test:8443"
    assert request.headers.get_list("Host") == ["hooks.example.test:8443"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.extensions["sni_hostname"] == "hooks.example.test"
    assert request.content == b"{}"


def test_pinned_request_plain_http_has_no_sni() -> None:
    target = check_url("http://hooks.example.test/in", allow_http=True)

    request = pinned_request("POST", target, IPv4Address("93.184.216.34"))

    assert str(request.url) == "http://93.184.216.34/in"
    assert request.headers["Host"] == "hooks.example.test"
    assert "sni_hostname" not in request.extensions


@dataclass
class ReceivedRequest:
    method: str
    path: str
    host: str | None
    body: bytes


@dataclass
class Receiver:
    port: int
    requests: list[ReceivedRequest] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


def make_handler(receiver: Receiver, redirect_to: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections open, so the tests can see whether a client reuses one.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(
                ReceivedRequest(self.command, self.path, self.headers.get("Host"), body)
            )
            if redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def run_receiver(
    *, ssl_context: ssl.SSLContext | None = None, redirect_to: str | None = None
) -> Iterator[Receiver]:
    receiver = Receiver(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.RequestHandlerClass = make_handler(receiver, redirect_to)
    receiver.port = server.server_address[1]
    if ssl_context is not None:
        ssl_context.sni_callback = lambda _socket, name, _context: receiver.server_names.append(
            name
        )
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.asyncio
async def test_send_pinned_keeps_host_header() -> None:
    with run_receiver() as receiver:
        target = check_url(
            f"http://{HOOK_HOST}:{receiver.port}/hooks/in?token=abc", allow_http=True
        )
        addresses = await resolve_and_check(
            "127.0.0.1", receiver.port, exempt_networks=LOOPBACK_EXEMPT
        )

        async with create_client(timeout=5) as client:
            response = await send_pinned(
                client, "POST", target, addresses, content=b'{"event": "ping"}'
            )
            await response.aread()
            await response.aclose()

    assert response.status_code == 200
    assert response.content == b"ok"
    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    assert received.host == f"{HOOK_HOST}:{receiver.port}"
    assert received.path == "/hooks/in?token=abc"
    assert received.body == b'{"event": "ping"}'


@pytest.mark.asyncio
async def test_send_pinned_tries_next_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connex.webhooks.ssrf")

    with run_receiver() as receiver:
        target = check_url(f"http://{HOOK_HOST}:{receiver.port}/in?token=T0K3N", allow_http=True)
        # The receiver listens on 127.0.0.1 only, so a connection to 127.0.0.2 is refused.
        addresses = [IPv4Address("127.0.0.2"), IPv4Address("127.0.0.1")]

        async with create_client(timeout=5) as client:
            response = await send_pinned(client, "POST", target, addresses, content=b"{}")
            await response.aclose()

    assert response.status_code == 200
    assert len(receiver.requests) == 1
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.getMessage() == "webhook connection failed, trying the next address"
    assert record.__dict__["address"] == "127.0.0.2"
    assert record.__dict__["host"] == HOOK_HOST
    assert "T0K3N" not in caplog.text
    assert "T0K3N" not in record.__dict__["error"]


@pytest.mark.asyncio
async def test_send_pinned_raises_when_no_address_connects() -> None:
    with run_receiver() as receiver:
        target = check_url(f"http://{HOOK_HOST}:{receiver.port}/in", allow_http=True)

        async with create_client(timeout=5) as client:
            with pytest.raises(httpx.ConnectError):
                await send_pinned(client, "POST", target, [IPv4Address("127.0.0.2")])

    assert receiver.requests == []


@pytest.mark.asyncio
async def test_send_pinned_rejects_empty_addresses() -> None:
    target = check_url(f"https://{HOOK_HOST}/in", allow_http=False)

    async with create_client(timeout=5) as client:
        with pytest.raises(ValueError, match="addresses is empty"):
            await send_pinned(client, "POST", target, [])


@pytest.mark.asyncio
async def test_send_pinned_does_not_follow_redirect() -> None:
    with run_receiver(redirect_to="http://127.0.0.1:1/internal") as receiver:
        target = check_url(f"http://{HOOK_HOST}:{receiver.port}/in", allow_http=True)

        async with create_client(timeout=5) as client:
            response = await send_pinned(
                client, "POST", target, [IPv4Address("127.0.0.1")], content=b"{}"
            )
            await response.aclose()

    assert response.status_code == 302
    assert response.headers["Location"] == "http://127.0.0.1:1/internal"
    assert len(receiver.requests) == 1


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Create a self-signed certificate for HOOK_HOST with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is required to create a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    certificate = directory / "cert.pem"
    key = directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1",
            "-subj", f"/CN={HOOK_HOST}",
            "-addext", f"subjectAltName=DNS:{HOOK_HOST}",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return certificate, key


def server_tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context


def client_tls_context(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


@pytest.mark.asyncio
async def test_send_pinned_tls_uses_original_host(tls_certificate: tuple[Path, Path]) -> None:
    certificate, key = tls_certificate

    with run_receiver(ssl_context=server_tls_context(certificate, key)) as receiver:
        target = check_url(f"https://{HOOK_HOST}:{receiver.port}/in", allow_http=False)

        client = create_client(timeout=5, ssl_context=client_tls_context(certificate))
        async with client:
            response = await send_pinned(
                client, "POST", target, [IPv4Address("127.0.0.1")], content=b"{}"
            )
            await response.aclose()

    assert response.status_code == 200
    assert receiver.server_names == [HOOK_HOST]
    assert receiver.requests[0].host == f"{HOOK_HOST}:{receiver.port}"


@pytest.mark.asyncio
async def test_send_pinned_tls_checks_certificate_name(
    tls_certificate: tuple[Path, Path],
) -> None:
    certificate, key = tls_certificate

    with run_receiver(ssl_context=server_tls_context(certificate, key)) as receiver:
        target = check_url(f"https://other.example.test:{receiver.port}/in", allow_http=False)

        client = create_client(timeout=5, ssl_context=client_tls_context(certificate))
        async with client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await send_pinned(client, "POST", target, [IPv4Address("127.0.0.1")])

    assert receiver.server_names == ["other.example.test"]
    assert receiver.requests == []


@pytest.mark.asyncio
async def test_client_does_not_reuse_tls_connection(tls_certificate: tuple[Path, Path]) -> None:
    certificate, key = tls_certificate

    with run_receiver(ssl_context=server_tls_context(certificate, key)) as receiver:
        trusted = check_url(f"https://{HOOK_HOST}:{receiver.port}/in", allow_http=False)
        other = check_url(f"https://other.example.test:{receiver.port}/in", allow_http=False)
        addresses = [IPv4Address("127.0.0.1")]

        client = create_client(timeout=5, ssl_context=client_tls_context(certificate))
        async with client:
            response = await send_pinned(client, "POST", trusted, addresses, content=b"{}")
            await response.aread()
            await response.aclose()
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await send_pinned(client, "POST", other, addresses, content=b"{}")

    assert response.status_code == 200
    assert receiver.server_names == [HOOK_HOST, "other.example.test"]
    assert len(receiver.requests) == 1


def test_parsed_target_fields() -> None:
    target = ParsedTarget("https", HOOK_HOST, 443, "/in")

    assert target.host_header == HOOK_HOST
    assert target.ip_literal is None
