"""Writes one DKIM-signed test message for bench/inbound, signed by dkimpy (independent of
the mail-auth library postagent verifies with).

argv: out size rsa_key_file ed25519_seed kind('rsa'|'ed')
The body is printable ASCII lines of 75 characters, about `size` bytes in all. The file has LF
line ends, because `smtp-source -F` sends every line with CRLF.
"""
import random
import string
import sys

import dkim

out, size, rsa, seed, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
random.seed(size)
lines, n = [], 0
while n < size:
    line = ''.join(random.choice(string.ascii_letters + string.digits + ' ') for _ in range(75)).strip() or 'x'
    lines.append(line)
    n += len(line) + 2
body = '\r\n'.join(lines) + '\r\n'
hdr = ('From: Alice <alice@sender.example>\r\nTo: bot@agents.bench.test\r\n'
       f'Subject: bench {kind} {size}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n'
       f'Message-ID: <bench-{kind}-{size}@sender.example>\r\nMIME-Version: 1.0\r\n'
       'Content-Type: text/plain; charset=us-ascii\r\n')
msg = (hdr + '\r\n' + body).encode()
heads = [b'from', b'to', b'subject', b'date', b'message-id', b'mime-version', b'content-type']
if kind == 'ed':
    sig = dkim.sign(msg, b'ed', b'sender.example', seed.encode(), canonicalize=(b'relaxed', b'relaxed'),
                    include_headers=heads, signature_algorithm=b'ed25519-sha256')
else:
    sig = dkim.sign(msg, b'rsa', b'sender.example', open(rsa, 'rb').read(),
                    canonicalize=(b'relaxed', b'relaxed'), include_headers=heads)
open(out, 'wb').write((sig + msg).replace(b'\r\n', b'\n'))
