#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora of the fuzz harnesses into
test/fuzz/{http,ws,json}/ (run once; the files are committed). Seeds are small
valid and nearly-valid inputs so that libFuzzer starts from every path the
server takes, not from noise. Each file name says what the seed is."""
import json, os, struct

here = os.path.dirname(os.path.abspath(__file__))

def write(target, name, data):
    d = os.path.join(here, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

# ---- http: first byte = read size - 1
KEY = b'dGhlIHNhbXBsZSBub25jZQ=='
UPGRADE = (b'GET /ws HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nUpgrade: websocket\r\n'
           b'Connection: Upgrade\r\nSec-WebSocket-Key: ' + KEY +
           b'\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:4000\r\n\r\n')
http = {
    'get_root': b'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
    'get_keepalive_10': b'GET /app.js HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
    'head_healthz': b'HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n',
    'pipelined': b'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    'post_body': b'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
    'chunked': b'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'smuggle': b'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'upgrade': UPGRADE,
    'upgrade_then_frame': UPGRADE + bytes([0x81, 0x80, 0, 0, 0, 0]),
    'upgrade_v8': UPGRADE.replace(b'Version: 13', b'Version: 8'),
    'if_none_match': b'GET /index.html HTTP/1.1\r\nHost: a\r\nIf-None-Match: W/"1-2", "x"\r\n\r\n',
    'escapes': b'GET /%2e%2e/%2Fetc/passwd?x=1#f HTTP/1.1\r\nHost: a\r\n\r\n',
    'folded_header': b'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n',
    'space_before_colon': b'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
    'http2': b'GET / HTTP/2.0\r\nHost: a\r\n\r\n',
    'long_url': b'GET /' + b'a' * 2100 + b' HTTP/1.1\r\n\r\n',
    'lf_only': b'GET / HTTP/1.1\nHost: a\n\n',
}
for name, req in http.items():
    write('http', name, bytes([255]) + req)
    write('http', name + '_bytewise', bytes([0]) + req)

# ---- ws: byte 0 = read size - 1, byte 1: bit 7 never drain, bit 0 our pings,
#      bit 1 shared pushes, bit 2 our close first; then client frames
def frame(payload, opcode=1, fin=True, mask=b'\0\0\0\0', rsv=0):
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        h += bytes([0x80 | n])
    elif n <= 0xFFFF:
        h += bytes([0x80 | 126]) + struct.pack('>H', n)
    else:
        h += bytes([0x80 | 127]) + struct.pack('>Q', n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def close(code, reason=b''):
    return frame(struct.pack('>H', code) + reason, opcode=8)

ping = json.dumps({'type': 'ping', 'ref': 1}).encode()
ws = {
    'ping_request': frame(ping),
    'ping_request_masked': frame(ping, mask=b'\x37\xfa\x21\x3d'),
    'fragmented': frame(ping[:5], fin=False) + frame(ping[5:9], opcode=0, fin=False)
                  + frame(b'x', opcode=9) + frame(ping[9:], opcode=0),
    'many_small_fragments': frame(ping[:1], fin=False)
                  + b''.join(frame(ping[i:i + 1], opcode=0, fin=False) for i in range(1, len(ping) - 1))
                  + frame(ping[-1:], opcode=0),
    'join_send': frame(b'{"type":"join","ref":"j","name":"ana"}') + frame(b'{"type":"send","ref":2,"content":"h\xc3\xa9"}'),
    'close_reason': close(1000, b'\xc3\xa9-ok'),
    'close_bad_reason': close(1000, b'ok\xff'),
    'close_empty': frame(b'', opcode=8),
    'close_1005': close(1005),
    'pong_unsolicited': frame(b'12345678', opcode=10),
    'binary': frame(b'\x00\x01', opcode=2),
    'bad_utf8_split': frame(b'{"a":"\xe2', fin=False) + frame(b'\x28\xa1"}', opcode=0),
    'rsv1': frame(ping, rsv=0x40),
    'unmasked': bytes([0x81, 0x02]) + b'hi',
    'len16': frame(json.dumps({'type': 'ping', 'ref': 'x' * 300}).encode()),
    'len64_header_only': bytes([0x81, 0xff]) + struct.pack('>Q', 70000) + b'\0\0\0\0',
    'ping_flood': frame(b'p' * 125, opcode=9) * 40,
    'deep_json': frame(b'[' * 200 + b']' * 200),
}
for name, data in ws.items():
    write('ws', name, bytes([255, 0]) + data)
    write('ws', name + '_bytewise', bytes([0, 0]) + data)
for name in ('ping_request', 'fragmented', 'close_reason'):
    write('ws', name + '_ping_push_close', bytes([15, 7]) + ws[name])
    write('ws', name + '_pushes_undrained', bytes([255, 0x82]) + ws[name] * 4)

# ---- json: requests as the session sees them
reqs = [
    {'type': 'ping', 'ref': 1}, {'type': 'ping', 'ref': 'abc'}, {'type': 'ping'},
    {'type': 'join', 'ref': 2, 'name': ' Ana María ', 'token': 't0k'},
    {'type': 'join', 'ref': 3, 'name': 'ㅤ'}, {'type': 'join', 'ref': 4, 'name': 'e\u0301'},
    {'type': 'send', 'ref': 5, 'content': 'hello \u202e world', 'client_id': 'c1'},
    {'type': 'history', 'ref': 6, 'before': 100, 'limit': 50},
    {'type': 'catch_up', 'ref': 7, 'after': 0}, {'type': 'leave', 'ref': 8},
    {'type': 'users', 'ref': 9, 'online': True, 'after': 'bob', 'prefix': 'a', 'limit': 20},
]
for i, r in enumerate(reqs):
    write('json', f'req_{i:02d}_{r["type"]}', json.dumps(r, ensure_ascii=False).encode())
raw = {
    'ref_big_number': b'{"type":"ping","ref":1e400}',
    'ref_negative_fraction': b'{"type":"ping","ref":-0.5e-3}',
    'nul_escape': b'{"type":"send","ref":1,"content":"a\\u0000b"}',
    'surrogate_escape': b'{"type":"send","ref":1,"content":"\\ud83d\\ude00 \\ud800"}',
    'duplicate_keys': b'{"type":"ping","type":"join","ref":1,"ref":2}',
    'trailing': b'{"type":"ping"} x',
    'not_object': b'[1,2,{"type":"ping"}]',
    'leading_zero': b'{"type":"history","before":01,"limit":5}',
    'deep': b'{"type":"ping","ref":' + b'[' * 100 + b']' * 100 + b'}',
    'escapes': b'{"type":"join","name":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"}',
}
for name, data in raw.items():
    write('json', name, data)
