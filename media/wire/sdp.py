"""Rewriting the answer's host candidates for a server behind NAT."""

from __future__ import annotations


def announce(answer_sdp: str, public_address: str) -> str:
    """Put `public_address` in place of each host candidate's address.

    A server behind a 1:1 NAT gathers on its private address; clients must be
    told the public one (the port is kept: the NAT forwards it unchanged). The
    candidate grammar is RFC 8839 §5.1: foundation, component, transport,
    priority, address, port, "typ", type.
    """
    lines = []
    for line in answer_sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line.split(" ")
            if len(fields) >= 8 and fields[7] == "host":
                fields[4] = public_address
                line = " ".join(fields)
        elif line.startswith("c=IN IP4 ") or line.startswith("c=IN IP6 "):
            version = "IP6" if ":" in public_address else "IP4"
            line = f"c=IN {version} {public_address}"
        lines.append(line)
    return "\r\n".join(lines)
