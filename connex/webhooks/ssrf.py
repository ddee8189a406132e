"""Guard outgoing webhook deliveries against server-side request forgery (SSRF).

A delivery goes through three steps:

1. check_url validates the URL: scheme, no credentials, a host, a port in 1..65535,
   and an IP literal host must be public.
2. resolve_and_check resolves the host and rejects it if any address is not public.
3. pinned_request builds a request to one of those checked addresses while the Host
   header and the TLS server name (SNI and the certificate check) stay the original
   host. The connection therefore cannot go to an address that a second DNS answer
   returns (DNS rebinding).

Redirects are never followed, because a redirect target has not been checked: send
pinned requests with ``follow_redirects=False``, as send_pinned does.

Exempt networks, for example a local test receiver on 127.0.0.1/32, override every
rule here. Error messages name the host and the rejected address, never the path,
query or credentials of the URL, because webhook URLs often carry tokens.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_HOST_LENGTH = 253

_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

# IPv4 ranges that are not public. 192.0.0.0/24 is rejected whole, although it contains
# a few public anycast addresses, because none of them receives webhooks.
_FORBIDDEN_IPV4: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "a 'this network' address (0.0.0.0/8)"),
    (IPv4Network("10.0.0.0/8"), "a private address (10.0.0.0/8)"),
    (IPv4Network("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"),
    (IPv4Network("127.0.0.0/8"), "a loopback address (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "a link-local address (169.254.0.0/16)"),
    (IPv4Network("172.16.0.0/12"), "a private address (172.16.0.0/12)"),
    (IPv4Network("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"),
    (IPv4Network("192.0.2.0/24"), "a documentation address (192.0.2.0/24)"),
    (IPv4Network("192.88.99.0/24"), "a deprecated 6to4 relay address (192.88.99.0/24)"),
    (IPv4Network("192.168.0.0/16"), "a private address (192.168.0.0/16)"),
    (IPv4Network("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"),
    (IPv4Network("198.51.100.0/24"), "a documentation address (198.51.100.0/24)"),
    (IPv4Network("203.0.113.0/24"), "a documentation address (203.0.113.0/24)"),
    (IPv4Network("224.0.0.0/4"), "a multicast address (224.0.0.0/4)"),
    (IPv4Network("255.255.255.255/32"), "the broadcast address"),
    (IPv4Network("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
)

# IPv6 ranges inside global unicast 2000::/3 that are not public. Everything outside
# 2000::/3 is rejected as well (loopback, unspecified, IPv4-compatible, unique local,
# link-local, site-local, multicast, discard-only, NAT64 local-use 64:ff9b:1::/48),
# except the IPv4-mapped and NAT64 64:ff9b::/96 forms, whose embedded IPv4 is checked.
_FORBIDDEN_IPV6: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("2001::/32"), "a Teredo address (2001::/32)"),
    (IPv6Network("2001:db8::/32"), "a documentation address (2001:db8::/32)"),
    (IPv6Network("2001::/23"), "an IETF protocol assignment (2001::/23)"),
    (IPv6Network("3fff::/20"), "a documentation address (3fff::/20)"),
)
_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_IPV6_NAMED_OUTSIDE_GLOBAL: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("::/128"), "the unspecified address (::)"),
    (IPv6Network("::1/128"), "the loopback address (::1)"),
    (IPv6Network("::/96"), "an IPv4-compatible address (::/96)"),
    (IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"),
    (IPv6Network("fc00::/7"), "a unique local address (fc00::/7)"),
    (IPv6Network("fe80::/10"), "a link-local address (fe80::/10)"),
    (IPv6Network("fec0::/10"), "a site-local address (fec0::/10)"),
    (IPv6Network("ff00::/8"), "a multicast address (ff00::/8)"),
)
_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A webhook URL that is invalid or points at an address that is not public."""


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A webhook URL that passed check_url, split into what a pinned request needs.

    ``host`` is lowercase ASCII (IDNA A-labels), without brackets for IPv6. ``raw_path``
    is the percent-encoded path and query, hidden from repr because it may contain tokens.
    """

    scheme: str
    host: str
    port: int
    raw_path: str = field(repr=False)
    ip_literal: IPAddress | None = None

    @property
    def host_header(self) -> str:
        """Value of the Host header: the host, bracketed for IPv6, with a non-default port."""
        host = f"[{self.host}]" if isinstance(self.ip_literal, IPv6Address) else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def check_url(
    url: str, *, allow_http: bool, exempt_networks: Sequence[IPNetwork] = ()
) -> ParsedTarget:
    """Validate a webhook URL and return its parts, or raise UnsafeURL saying what is wrong.

    Host names are only checked for syntax here, so call resolve_and_check before sending.
    """
    parsed = _parse_url(url)
    if parsed is None:
        raise UnsafeURL("invalid webhook URL: it could not be parsed as an absolute URL")

    scheme = _check_scheme(parsed.scheme, allow_http)
    if parsed.userinfo:
        raise UnsafeURL(
            "invalid webhook URL: it must not contain a username or password. "
            "Receivers authenticate deliveries by the webhook signature instead"
        )
    host = _check_host(parsed.raw_host.decode("ascii"))
    port = _check_port(parsed.port, scheme)

    literal = _parse_ip(host)
    if literal is not None:
        _reject_forbidden(host, literal, exempt_networks)
    return ParsedTarget(scheme, host, port, parsed.raw_path.decode("ascii"), literal)


def _parse_url(url: str) -> httpx.URL | None:
    # Returns None rather than raising, so that the UnsafeURL raised by the caller is not
    # chained to the httpx error, whose message may quote parts of the URL.
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        return None


def _check_scheme(scheme: str, allow_http: bool) -> str:
    if scheme == "https" or (scheme == "http" and allow_http):
        return scheme
    if not scheme:
        raise UnsafeURL("invalid webhook URL: it has no scheme. Use an absolute https:// URL")
    if scheme == "http":
        raise UnsafeURL("invalid webhook URL: plain http is not allowed for webhooks. Use https")
    allowed = "https or http" if allow_http else "https"
    raise UnsafeURL(f"invalid webhook URL: scheme {scheme!r} is not allowed. Use {allowed}")


def _check_host(host: str) -> str:
    if not host:
        raise UnsafeURL("invalid webhook URL: it has no host")
    if "%" in host:
        raise UnsafeURL(f"invalid webhook URL host {host!r}: IPv6 zone IDs are not allowed")
    if _parse_ip(host) is not None:
        return host
    if len(host) > MAX_HOST_LENGTH:
        raise UnsafeURL(f"invalid webhook URL: host is longer than {MAX_HOST_LENGTH} characters")

    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise UnsafeURL(
            f"invalid webhook URL host {host!r}: each dot-separated label must be 1 to 63 "
            "letters, digits, hyphens or underscores, without a trailing dot"
        )
    # glibc's getaddrinfo reads "0x7f.1", "127.1" and "2130706433" as 127.0.0.1, and no
    # top-level domain is all-numeric, so such a host is an IPv4 address in disguise.
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UnsafeURL(
            f"invalid webhook URL host {host!r}: write an IPv4 address in dotted decimal"
        )
    return host


def _check_port(port: int | None, scheme: str) -> int:
    if port is None:
        return DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise UnsafeURL(f"invalid webhook URL: port {port} is outside 1..65535")
    return port


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


async def resolve_and_check(
    host: str, port: int, *, exempt_networks: Sequence[IPNetwork] = ()
) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses, or raise UnsafeURL if any is not public.

    An IP literal is checked without a DNS lookup. Connect only to the returned addresses.
    Raises socket.gaierror when the name does not resolve.
    """
    literal = _parse_ip(host)
    addresses = [literal] if literal is not None else await _resolve(host, port)
    for address in addresses:
        _reject_forbidden(host, address, exempt_networks)
    return addresses


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    results = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in results:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeURL(f"webhook host {host!r} resolved to no IPv4 or IPv6 address")
    return addresses


def _reject_forbidden(host: str, address: IPAddress, exempt: Sequence[IPNetwork]) -> None:
    reason = forbidden_reason(address, exempt)
    if reason is None:
        return
    raise UnsafeURL(
        f"webhook host {host!r} has address {address}, {reason}. "
        "Webhooks are sent only to public addresses"
    )


def is_forbidden(address: IPAddress, exempt_networks: Sequence[IPNetwork] = ()) -> bool:
    """Return whether a webhook must not be sent to ``address``."""
    return forbidden_reason(address, exempt_networks) is not None


def forbidden_reason(address: IPAddress, exempt_networks: Sequence[IPNetwork] = ()) -> str | None:
    """Return why ``address`` is not public, such as "a private address (10.0.0.0/8)".

    Returns None for a public address or one inside ``exempt_networks``. An IPv6 address
    that embeds an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4) is judged by the
    embedded address, and the exemptions apply to that address too.
    """
    if any(address in network for network in exempt_networks):
        return None
    if isinstance(address, IPv4Address):
        return _match(address, _FORBIDDEN_IPV4)
    return _ipv6_reason(address, exempt_networks)


def _ipv6_reason(address: IPv6Address, exempt_networks: Sequence[IPNetwork]) -> str | None:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = forbidden_reason(embedded, exempt_networks)
        return None if reason is None else f"an IPv6 form of {embedded}, {reason}"

    reason = _match(address, _FORBIDDEN_IPV6)
    if reason is not None or address in _IPV6_GLOBAL_UNICAST:
        return reason
    named = _match(address, _IPV6_NAMED_OUTSIDE_GLOBAL)
    return named or "an address outside IPv6 global unicast (2000::/3)"


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def _match(address: IPAddress, table: Sequence[tuple[IPNetwork, str]]) -> str | None:
    for network, reason in table:
        if address in network:
            return reason
    return None


def pinned_request(
    method: str,
    target: ParsedTarget,
    address: IPAddress,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes = b"",
) -> httpx.Request:
    """Build a request that connects to ``address`` but names ``target.host``.

    ``address`` must come from resolve_and_check. The URL carries the address, while the
    Host header and, for https, the ``sni_hostname`` extension carry the original host.
    httpcore 1.0.9 sends that name in TLS SNI and checks the certificate against it.
    """
    url = httpx.URL(
        scheme=target.scheme,
        host=str(address),
        port=target.port,
        raw_path=target.raw_path.encode("ascii"),
    )
    request_headers = httpx.Headers(headers)
    request_headers["Host"] = target.host_header
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return httpx.Request(
        method, url, headers=request_headers, content=content, extensions=extensions
    )


def create_client(
    *, timeout: httpx.Timeout | float, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """Create an AsyncClient configured for pinned webhook requests.

    It follows no redirects and ignores proxy variables and .netrc (trust_env=False).
    Keep-alive is off because httpcore pools connections by the URL's scheme, host and
    port, which here are the checked IP address and port. A kept TLS connection, verified
    for one host name, would otherwise carry a request for another name on the same
    address without checking that name's certificate. ``ssl_context`` replaces the
    default certificate verification, for example to trust a private CA.
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
        verify=True if ssl_context is None else ssl_context,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def send_pinned(
    client: httpx.AsyncClient,
    method: str,
    target: ParsedTarget,
    addresses: Sequence[IPAddress],
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes = b"",
) -> httpx.Response:
    """Send a pinned request to each checked address in turn until one connects.

    Only a failed connection moves on to the next address, since the request was not
    sent. The response body is not read: bound its size with ``aiter_bytes`` and close
    the response with ``aclose``. Raises the error of the last address if none connects.
    """
    if not addresses:
        raise ValueError("addresses is empty. Pass the list that resolve_and_check returned")

    for address in addresses[:-1]:
        request = pinned_request(method, target, address, headers=headers, content=content)
        try:
            return await client.send(request, follow_redirects=False, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            logger.info(
                "webhook connection failed, trying the next address",
                extra={"host": target.host, "address": str(address), "error": repr(error)},
            )

    request = pinned_request(method, target, addresses[-1], headers=headers, content=content)
    return await client.send(request, follow_redirects=False, stream=True)
