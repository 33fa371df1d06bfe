"""Where a webhook may be sent: not to the server's own machine or private networks.

A notification is a POST the server makes on a user's behalf, so a ``notify_url`` of
``http://127.0.0.1:5432/`` or ``http://169.254.169.254/`` would let any user reach what
only the server can (server-side request forgery).  Refused, unless the configuration
allows them: loopback, link-local, private (RFC 1918, ``fc00::/7``), shared (CGNAT),
unspecified, multicast and reserved addresses, and host names that resolve to any of
them.  Names are resolved when the task is submitted and again before each delivery,
because a name's addresses can change in between; and the delivery's connection itself
goes only to an address the policy permits (:func:`pinned_transport`), so that a name
answering differently between the check and the connection (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from spool.errors import ValidationError
from spool.limits import Limits

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """``webhook_allowed_networks`` as networks; a malformed entry names the setting."""
    out: list[Network] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError as exc:
            raise ValidationError(
                f"config webhook_allowed_networks: {item!r} is not a network ({exc})",
                field="webhook_allowed_networks",
            ) from None
    return tuple(out)


def is_internal(address: Address) -> bool:
    """An address that belongs to this machine or a non-public network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or not address.is_global
    )


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()

    @classmethod
    def of(cls, limits: Limits) -> TargetPolicy:
        return cls(limits.webhook_allow_private, limits.webhook_allowed_networks)

    def check(self, url: str, field: str = "options.notify_url") -> None:
        """Raise ValidationError (``field``) when ``url``'s host is, or resolves to, an
        address this policy refuses."""
        if self.allow_private:
            return
        host = urlsplit(url).hostname
        if not host:
            raise ValidationError("the webhook URL names no host", field=field)
        for address in resolve(host):
            if not self.permits(address):
                shown = host if host == str(address) else f"{host} ({address})"
                raise ValidationError(
                    f"webhook host {shown} is a loopback, link-local, private or reserved "
                    "address; this server sends notifications to public addresses only "
                    "(see webhook_allow_private and webhook_allowed_networks)",
                    field=field,
                )

    def permits(self, address: Address) -> bool:
        return self.allow_private or not is_internal(address) or self._allowed(address)

    def _allowed(self, address: Address) -> bool:
        plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        for net in parse_networks(self.allowed_networks):
            for candidate in (address, plain):
                if candidate is not None and candidate.version == net.version:
                    if candidate in net:
                        return True
        return False


def resolve(host: str) -> list[Address]:
    """Every address ``host`` stands for (itself when it is a literal address); none
    when it does not resolve now: such a name reaches nothing, and a delivery to it
    fails like one to any unreachable receiver (the name is checked again then)."""
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    out: list[Address] = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return out


def pinned_transport(policy: TargetPolicy) -> Any:
    """An httpx transport whose connections go only to addresses ``policy`` permits: the
    host is resolved when the socket is opened, and the socket is opened to a permitted
    address of it (TLS still checks the certificate against the host name)."""
    import httpcore
    import httpx

    class PinnedBackend(httpcore.SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            addresses = resolve(host)
            permitted = [a for a in addresses if policy.permits(a)]
            if addresses and not permitted:
                raise ValidationError(
                    f"webhook host {host} now resolves to {addresses[0]}, an address this "
                    "server sends no notifications to",
                    field="notify_url",
                )
            error: Exception = httpcore.ConnectError(f"{host} does not resolve")
            for address in permitted:
                try:
                    return super().connect_tcp(
                        str(address), port, timeout, local_address, socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
            raise error

    transport = httpx.HTTPTransport()
    # httpx takes no network backend; its pool does, and reads it only when connecting.
    transport._pool._network_backend = PinnedBackend()
    return transport
