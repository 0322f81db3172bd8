"""The ICE servers handed to clients: STUN, and TURN with short-lived credentials.

A classroom behind a firewall that drops UDP reaches the relay through a TURN
server (coturn) over TCP or TLS. The server and coturn share one secret
(coturn's `use-auth-secret` / `static-auth-secret`); each client is given a
username that carries its expiry and a password derived from it, the "TURN REST
API" convention (draft-uberti-behave-turn-rest-00 §2.2) coturn implements: a
leaked password stops working when it expires, and no account is kept anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from signaling.settings import Settings


def turn_credential(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), as coturn checks it."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def ice_servers(settings: Settings, who: str, now: float) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a client (`who` names it in the TURN username)."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret is not None:
        username = f"{int(now + settings.turn_ttl_s)}:{who}"
        credential = turn_credential(settings.turn_secret.get_secret_value(), username)
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": credential}
        )
    return servers


def link_headers(servers: list[dict[str, Any]]) -> list[str]:
    """The same servers as WHIP's `Link` headers (RFC 9725 §4.4)."""
    links = []
    for server in servers:
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (
                    f'; username="{server["username"]}"; credential="{server["credential"]}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links
