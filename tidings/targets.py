"""Where Tidings may send a user's webhook or Slack incoming-webhook: public addresses only.

A target URL must be `https://` to a public address. Link-local (169.254.0.0/16, fe80::/10, the
cloud metadata service), private, shared, loopback, multicast, reserved and unspecified addresses
are refused, however they are spelled (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`,
`::ffff:127.0.0.1`), twice:

- when the URL is registered (`check_url`, from the client: an InvalidRequest naming the field),
  on the literal address or the name (`localhost` and `*.localhost` always mean loopback);
- when a message is sent (`resolve`), on every address the name resolves to; the request then
  goes to the address that was checked (`pinned`), with the original Host header and TLS SNI,
  so DNS cannot answer differently between the check and the connection. Redirects are never
  followed.

Operators may allow networks or host names (TIDINGS_WEBHOOK_ALLOWED_NETWORKS, e.g.
`127.0.0.0/8,::1` for the dev stack, which `tidings dev` sets); `http://` is accepted only for
those. DNS goes through a `Resolver` function, so tests substitute their own answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

LOOPBACK = ("127.0.0.0/8", "::1/128")


class TargetRefused(ValueError):
    """The URL is not an acceptable target; the message says why (without the query string)."""


class Unresolvable(TargetRefused):
    """The name does not resolve (for now or for good: `permanent`)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TargetPolicy:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> TargetPolicy:
        """Entries are networks (`10.0.0.0/8`), addresses (`::1`) or host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(check_host_name(entry))
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip in n or _unwrap(ip) in n for n in self.networks)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


def check_host_name(entry: str) -> str:
    name = entry.lower().rstrip(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(
            label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        )
    ):
        raise ValueError(f"{entry!r} is neither a network, an address nor a host name")
    return name


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return ipaddress.IPv4Address(packed[12:])
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(packed[12:])
    return ip


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is."""
    inner = _unwrap(ip)
    for candidate in dict.fromkeys([inner, ip]):
        kind = (
            "unspecified"
            if candidate.is_unspecified
            else "loopback"
            if candidate.is_loopback
            else "link-local"
            if candidate.is_link_local
            else "multicast"
            if candidate.is_multicast
            else "private"
            if candidate.is_private
            else "reserved"
            if candidate.is_reserved or not candidate.is_global
            else None
        )
        if kind is not None:
            return f"{ip} is a {kind} address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """`host` read as an address the way resolvers read it (inet_aton's short, decimal, octal
    and hex IPv4 forms included), or None if it is a name."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def check_url(url: str, policy: TargetPolicy) -> None:
    """Registration: the scheme, and the host when it is an address or a loopback name."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not accepted")
    ip = literal_address(host)
    allowed = policy.allows_host(host) or (ip is not None and policy.allows_address(ip))
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed):
        raise TargetRefused(
            "must be an https:// URL (http:// only to TIDINGS_WEBHOOK_ALLOWED_NETWORKS)"
        )
    if allowed:
        return
    if ip is not None:
        reason = refusal(ip)
        if reason is not None:
            raise TargetRefused(f"{reason}; webhook targets must be public")
    elif host == "localhost" or host.endswith(".localhost"):
        raise TargetRefused(f"{host} is a loopback name; webhook targets must be public")


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def resolve(
    host: str, port: int, policy: TargetPolicy, resolver: Resolver = system_resolver
) -> IPAddress:
    """Send time: the address to connect to. Every address the name resolves to must be
    public (or allowed); otherwise which one the connection picked would decide safety."""
    ip = literal_address(host)
    if ip is not None:
        addresses = [ip]
    else:
        try:
            addresses = await resolver(host, port)
        except socket.gaierror as e:
            permanent = e.errno == socket.EAI_NONAME
            raise Unresolvable(f"host {host!r} does not resolve: {e}", permanent=permanent) from e
        if not addresses:
            raise Unresolvable(f"host {host!r} has no address", permanent=True)
    if policy.allows_host(host):
        return addresses[0]
    for address in addresses:
        if policy.allows_address(address):
            continue
        reason = refusal(address)
        if reason is not None:
            raise TargetRefused(f"host {host!r}: {reason}; targets must be public")
    return addresses[0]
