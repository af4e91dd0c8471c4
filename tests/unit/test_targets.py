"""Webhook targets: every spelling of a non-public address is refused at registration and at
send time; allowed networks and hosts open exactly what they name."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from tidings import targets
from tidings.targets import TargetPolicy, TargetRefused, Unresolvable

NONE = TargetPolicy()
LOOPBACK = TargetPolicy.from_entries(targets.LOOPBACK)

REFUSED_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("0x7f000001", "loopback"),  # hex
    ("0x7f.0.0.1", "loopback"),
    ("0177.0.0.1", "loopback"),  # octal
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
    ("[::ffff:7f00:1]", "loopback"),
    ("[::ffff:169.254.169.254]", "link-local"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("2852039166", "link-local"),  # 169.254.169.254 in decimal
    ("[fe80::1]", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("[fc00::1]", "private"),
    ("100.64.0.1", "reserved"),  # shared address space (CGNAT)
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"),
    ("[2002:7f00:1::]", "loopback"),  # 6to4 around 127.0.0.1
    ("[64:ff9b::a00:1]", "private"),  # NAT64 around 10.0.0.1
    ("localhost", "loopback"),
    ("api.localhost", "loopback"),
]


@pytest.mark.parametrize(("host", "kind"), REFUSED_HOSTS)
def test_registration_refuses_every_spelling(host: str, kind: str) -> None:
    with pytest.raises(TargetRefused, match=kind):
        targets.check_url(f"https://{host}/hook", NONE)


@pytest.mark.parametrize(("host", "kind"), [h for h in REFUSED_HOSTS if "localhost" not in h[0]])
async def test_send_time_refuses_every_spelling(host: str, kind: str) -> None:
    async def never(host: str, port: int) -> list[targets.IPAddress]:
        raise AssertionError("an address literal needs no lookup")

    with pytest.raises(TargetRefused, match=kind):
        await targets.resolve(host.strip("[]"), 443, NONE, never)


def test_public_https_is_accepted_and_http_is_not() -> None:
    targets.check_url("https://93.184.216.34/hook", NONE)
    targets.check_url("https://hooks.example.com/hook?token=x", NONE)
    with pytest.raises(TargetRefused, match="https"):
        targets.check_url("http://hooks.example.com/hook", NONE)
    with pytest.raises(TargetRefused, match="credentials"):
        targets.check_url("https://user:pw@hooks.example.com/hook", NONE)


def test_allowed_networks_and_hosts_open_what_they_name() -> None:
    targets.check_url("http://127.0.0.1:8026/users/u1", LOOPBACK)
    targets.check_url("http://127.1:8026/users/u1", LOOPBACK)
    targets.check_url("http://[::1]:8026/", LOOPBACK)
    with pytest.raises(TargetRefused, match="private"):
        targets.check_url("https://10.0.0.1/", LOOPBACK)
    internal = TargetPolicy.from_entries(["10.20.0.0/16", "hooks.internal"])
    targets.check_url("http://hooks.internal/x", internal)
    targets.check_url("https://10.20.3.4/x", internal)
    with pytest.raises(TargetRefused, match="private"):
        targets.check_url("https://10.21.0.1/x", internal)
    with pytest.raises(ValueError, match="neither"):
        TargetPolicy.from_entries(["not a host!"])


async def test_a_name_is_refused_if_any_of_its_addresses_is_not_public() -> None:
    async def answers(host: str, port: int) -> list[targets.IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.1.1.1")]

    with pytest.raises(TargetRefused, match=r"'evil\.example': 10\.1\.1\.1 is a private"):
        await targets.resolve("evil.example", 443, NONE, answers)


async def test_the_first_public_address_is_the_one_to_connect_to() -> None:
    async def answers(host: str, port: int) -> list[targets.IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800::1")]

    ip = await targets.resolve("hooks.example.com", 443, NONE, answers)
    assert str(ip) == "93.184.216.34"


async def test_unresolvable_names() -> None:
    async def nxdomain(host: str, port: int) -> list[targets.IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def flaky(host: str, port: int) -> list[targets.IPAddress]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")

    with pytest.raises(Unresolvable) as e:
        await targets.resolve("nowhere.example", 443, NONE, nxdomain)
    assert e.value.permanent
    with pytest.raises(Unresolvable) as e:
        await targets.resolve("nowhere.example", 443, NONE, flaky)
    assert not e.value.permanent
