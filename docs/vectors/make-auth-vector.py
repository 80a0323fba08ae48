#!/usr/bin/env python3
"""Writes docs/vectors/auth-headers.json: the version-2 X-E2A-Auth-* golden vector.

An independent implementation of docs/auth-headers.md with nothing but Python's standard
library (hashlib, hmac, re), so the Rust code is checked against the specification rather
than against itself. Run from the repository root: python3 docs/vectors/make-auth-vector.py
"""
import hashlib
import hmac
import json
import re

LIMIT = 998  # Postfix's smtp/lmtp_line_length_limit
BOUND = ["from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id",
         "in-reply-to", "references", "mime-version", "content-type",
         "content-transfer-encoding", "x-e2a-conversation-id"]


def undo_postfix_breaks(text: bytes) -> bytes:
    lines = re.findall(rb"[^\n]*\n|[^\n]+$", text)
    out, continued = b"", False
    for k, line in enumerate(lines):
        content = line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line
        term = line[len(content):]
        out += content[1:] if continued else content
        nxt = lines[k + 1] if k + 1 < len(lines) else b""
        continued = len(content) == LIMIT and nxt.startswith(b" ")
        if not continued:
            out += term
    return out


def relaxed_body(body: bytes) -> bytes:
    body = undo_postfix_breaks(body)
    lines = re.split(rb"\r?\n", body)
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [re.sub(rb"[ \t]+", b" ", l).rstrip(b" \t") for l in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(l + b"\r\n" for l in lines)


def relaxed_header(field: bytes) -> bytes:
    field = undo_postfix_breaks(field)
    name, _, value = field.partition(b":")
    value = re.sub(rb"\r?\n", b"", value)
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" \t")
    return name.strip().lower() + b":" + value


def split(raw: bytes):
    m = re.search(rb"\r?\n\r?\n", raw)
    return raw[: m.start() + len(m.group(0)) - (2 if m.group(0).endswith(b"\r\n") else 1)], raw[m.end():]


def fields(head: bytes):
    return re.findall(rb"[^ \t\r\n][^\n]*\n(?:[ \t][^\n]*\n)*", head)


def header_hash(head: bytes) -> str:
    hashes = {}
    for f in fields(head):
        f = f.rstrip(b"\r\n")
        name = f.split(b":", 1)[0].strip().lower().decode()
        if name in BOUND:
            hashes.setdefault(name, hashlib.sha256()).update(relaxed_header(f) + b"\r\n")
    return " ".join(f"{n}={hashes[n].hexdigest()[:32]}" for n in BOUND if n in hashes)


def tag(secret: bytes, msg_id: str, address: str) -> str:
    data = b"postagent-rcpt-v2\n" + msg_id.encode() + b"\n" + address.lower().encode()
    return hmac.new(secret, data, hashlib.sha256).hexdigest()[:16]


secret = b"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
long_line = bytes(ord("a") + i % 26 for i in range(1500))
original = (
    b"Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n"
    b"\tby mx.agents.example.net (Postfix) with ESMTP id 4dQ1xk0sYzz9sWL\r\n"
    b"\tfor <bot@agents.example.net>; Sat, 21 Nov 2026 12:00:00 +0000 (UTC)\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: bot@agents.example.net\r\n"
    b"Subject:  Invoice\t42 \r\n"
    b"Date: Sat, 21 Nov 2026 11:59:58 +0000\r\n"
    b"Message-ID: <inv42@example.org>\r\n"
    b"X-Mailer: not bound\r\n"
    b"\r\n"
    b"Hello agent,\r\n\r\nplease  file this\tinvoice.  \r\n" + long_line + b"\r\n\r\n-- \r\nAlice\r\n\r\n"
)
head, body = split(original)
claims = {
    "version": "2",
    "verified": "true",
    "sender": "alice@example.org",
    "entity_type": "human",
    "domain_check": "spf=pass (domain=example.org aligned=yes); dkim=pass (d=example.org s=sel1 aligned=yes); dmarc=pass (domain=example.org policy=reject aligned_by=spf,dkim)",
    "delegation": "",
    "timestamp": "2026-11-21T12:00:00Z",
    "message_id": "msg_0123456789abcdef0123456789abcdef",
    "queue_id": "4dQ1xk0sYzz9sWL",
}
rcpts = ["bot@agents.example.net", "Ops@Agents.Example.net"]
tags = [tag(secret, claims["message_id"], r) for r in rcpts]
hh = header_hash(head)
bh = hashlib.sha256(relaxed_body(body)).hexdigest()
order = ["version", "verified", "sender", "entity_type", "domain_check", "delegation",
         "timestamp", "message_id", "queue_id"]
canonical = "\n".join([claims[k] for k in order] + [" ".join(tags), hh, bh])
signature = hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()
names = ["Version", "Verified", "Sender", "Entity-Type", "Domain-Check", "Delegation",
         "Timestamp", "Message-Id", "Queue-Id"]
headers = [[f"X-E2A-Auth-{n}", claims[k]] for n, k in zip(names, order)]
headers += [["X-E2A-Auth-Recipients", " ".join(tags)], ["X-E2A-Auth-Header-Hash", hh],
            ["X-E2A-Auth-Body-Hash", bh], ["X-E2A-Auth-Signature", signature]]
signed = b"".join(f"{n}: {v}".rstrip(" ").encode() + b"\r\n" for n, v in headers) + original


def postfix_lmtp(msg: bytes) -> bytes:
    """What Postfix's LMTP client sends: lines over 998 octets broken with CRLF SP."""
    out = []
    for line in re.split(rb"(?<=\n)", msg):
        if not line:
            continue
        content, term = (line[:-2], b"\r\n") if line.endswith(b"\r\n") else (line, b"")
        pieces = [content[:LIMIT]]
        rest = content[LIMIT:]
        while rest:
            pieces.append(b" " + rest[: LIMIT - 1])
            rest = rest[LIMIT - 1:]
        out.append(b"\r\n".join(pieces) + term)
    return b"".join(out)


vector = {
    "about": "X-E2A-Auth-* version 2 golden vector (docs/auth-headers.md), computed independently by docs/vectors/make-auth-vector.py with Python's hashlib, hmac and re.",
    "secret": secret.decode(),
    "secret_note": "the deployment secret file's content, used as the HMAC key as UTF-8 bytes (surrounding whitespace trimmed)",
    "original": original.decode(),
    "envelope_recipients": rcpts,
    "claims": claims,
    "relaxed_body": relaxed_body(body).decode(),
    "body_hash": bh,
    "header_hash": hh,
    "recipient_tags": tags,
    "canonical": canonical,
    "signature": signature,
    "headers": headers,
    "message": signed.decode(),
    "as_delivered_by_postfix_lmtp": postfix_lmtp(signed).decode(),
}
with open("docs/vectors/auth-headers.json", "w") as f:
    json.dump(vector, f, indent=2)
    f.write("\n")
print("wrote docs/vectors/auth-headers.json")
