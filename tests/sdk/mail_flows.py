"""Drives postagent's mail flows through the published e2a SDK, unmodified, against a server
whose mail goes through a real private Postfix (tests/it/sdk_mail.rs sets it up).

Before it starts, one DKIM-signed message with an attachment was delivered to AGENT through
Postfix. The script prints "WAITING <message id>" when it wants the test to send the answer
to that message id through Postfix, and reads one line back once it is sent. It ends with
"SDK OK"; any failed assertion exits non-zero.
"""

import base64
import http.server
import queue
import sys
import threading

import httpx
from e2a import E2AClient, E2AConflictError, construct_event

AGENT = "bot@agents.test"
PDF = b"%PDF-1.4 invoice 42"


def say(*parts):
    print(*parts, flush=True)


hits = queue.Queue()


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        hits.put((body, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
HOOK_URL = f"http://127.0.0.1:{receiver.server_address[1]}/hook"


def next_hit(kind):
    while True:
        body, headers = hits.get(timeout=60)
        if headers.get("x-e2a-event-type") == kind:
            return body, headers


with E2AClient() as c:
    # Mail that came in through Postfix and the milter: listed, read, authenticated, with
    # its attachment (metadata, inline bytes and the signed download link).
    inbox = c.messages.list(AGENT).to_list(limit=10)
    assert [m.subject for m in inbox] == ["Invoice 42"], inbox
    m = c.messages.get(AGENT, inbox[0].id)
    assert m.verified_domain == "sender.test", m
    assert m.authentication is not None and m.authentication.dmarc.status == "pass", m.authentication
    assert m.reply_to == ["alice@example.org"], m.reply_to
    assert base64.b64decode(m.raw_message) if isinstance(m.raw_message, str) else m.raw_message
    assert [a.filename for a in m.attachments] == ["invoice.pdf"], m.attachments
    att = c.messages.get_attachment(AGENT, m.id, 0)
    got = httpx.get(att.download_url)
    assert got.status_code == 200 and got.content == PDF, got
    assert c.messages.list(AGENT).to_list(limit=10) == [], "reading it marked it read"

    # Webhooks: create, test (verified with construct_event), rotate (both secrets verify).
    wh = c.webhooks.create({"url": HOOK_URL, "events": ["email.received", "email.sent"]})
    first = wh.signing_secret
    assert first.startswith("whsec_"), wh
    t = c.webhooks.test(wh.id)
    assert t.delivery_id, t
    body, headers = next_hit("email.received")
    assert construct_event(body, headers["x-e2a-signature"], first).type == "email.received"
    rot = c.webhooks.rotate_secret(wh.id)
    second = rot.signing_secret
    c.webhooks.test(wh.id)
    body, headers = next_hit("email.received")
    for secret in (first, second):
        construct_event(body, headers["x-e2a-signature"], secret)

    # Reply (to the Reply-To), which leaves through Postfix; the answer comes back through
    # Postfix into the same conversation, live on the WebSocket and on the webhook.
    r = c.messages.reply(AGENT, m.id, {"text": "Paid, thanks."})
    assert r.status == "accepted" and r.method == "smtp", r
    sent = c.messages.get(AGENT, r.message_id)
    conv = sent.conversation_id
    assert conv and sent.subject == "Re: Invoice 42" and sent.to == ["alice@example.org"], sent
    body, headers = next_hit("email.sent")
    assert construct_event(body, headers["x-e2a-signature"], second).data["message_id"] == r.message_id

    events = queue.Queue()

    def listen():
        with E2AClient() as lc:
            for ev in lc.listen(AGENT):
                events.put(ev)

    threading.Thread(target=listen, daemon=True).start()
    say("WAITING", r.message_id)
    sys.stdin.readline()
    ev = events.get(timeout=60)
    assert ev.type == "email.received" and ev.data["subject"] == "Re: Invoice 42 received", ev
    body, headers = next_hit("email.received")
    hooked = construct_event(body, headers["x-e2a-signature"], second)
    assert hooked.id == ev.id, (hooked.id, ev.id)
    answer = c.messages.get(AGENT, ev.data["message_id"])
    assert answer.conversation_id == conv, (answer.conversation_id, conv)

    convs = c.conversations.list(AGENT).to_list(limit=10)
    assert [x.id for x in convs] == [conv] and convs[0].message_count == 2, convs
    detail = c.conversations.get(AGENT, conv)
    assert sorted(x.direction for x in detail.messages) == ["inbound", "outbound"], detail

    # The event log and a redelivery with the same id and bytes.
    assert c.events.get(ev.id).type == "email.received"
    assert ev.id in [e.id for e in c.events.list().to_list(limit=100)]
    red = c.events.redeliver(ev.id)
    assert red.event_id == ev.id, red
    body2, _ = next_hit("email.received")
    assert body2 == body, "a redelivery is the same bytes"

    # Forward with the original attachment, through Postfix.
    f = c.messages.forward(AGENT, m.id, {"to": ["dave@example.org"], "text": "FYI"})
    assert f.status == "accepted", f

    # Review: held, approved (leaves through Postfix) and rejected (never leaves).
    c.agents.replace_protection(
        AGENT,
        {
            "inbound": {"gate": {"policy": "open"}, "scan": {"sensitivity": "off"}},
            "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {"sensitivity": "off"}},
            "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
        },
    )
    held = c.messages.send(AGENT, {"to": ["bob@example.org"], "subject": "Approved via SDK", "text": "ok"})
    assert held.status == "pending_review", held
    assert c.reviews.approve(held.message_id).status == "accepted"
    try:
        c.reviews.approve(held.message_id)
        raise AssertionError("a second approval succeeded")
    except E2AConflictError as e:
        assert e.code == "message_not_pending", e
    nope = c.messages.send(AGENT, {"to": ["carol@example.org"], "subject": "Rejected via SDK", "text": "no"})
    assert c.reviews.reject(nope.message_id, {"reason": "no"}).status == "review_rejected"

say("SDK OK")
