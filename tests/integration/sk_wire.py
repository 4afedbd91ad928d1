"""Client-side wire helpers of the SecKill integration tests (Python 3 stdlib only): RESP, SecKill's Redis
layout, a one-shot HTTP client and the request signature. Pure code, no processes: harness.py re-exports all of
it, so tests import these names from harness as before.
"""

import hashlib
import hmac
import http.client as httpclient
import itertools
import json
import os
import re
import secrets
import time
import urllib.parse

__all__ = [
    "RedisError", "_resp_encode", "_RespReader", "RESULT_BUCKET_MS", "RESULT_KEEP_S", "TOKEN_FIELDS", "result_key",
    "result_keep_until", "stored_results", "token_fields", "token_info", "user_wins", "http", "user_key", "sign",
    "signed_params", "KEY_FORMATS", "LOGIC_ALIVE_KEY", "queue_key", "BLACKLIST_USER_KEY", "BLACKLIST_IP_KEY",
    "BLACKLIST_NOTICE", "blacklist_key", "node_key", "nonce_key", "activity_key", "activity_tag_prefix", "reply_channel",
    "keys_sample", "key_glob", "script_names", "script_source", "script_sha", "bucket_tag", "user_bucket",
    "bucket_split", "bucket_speed", "bucket_key", "bucket_nonce_key", "bucket_result_key", "bucket_keys_sample",
]

# ---------------------------------------------------------------------------------------------
# RESP
# ---------------------------------------------------------------------------------------------


class RedisError(Exception):
    pass


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _RespReader:

    def __init__(self, sock):
        self.f = sock.makefile("rb")

    def _line(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        return line[:-2]

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise RedisError("bad RESP type %r" % t)


# ---------------------------------------------------------------------------------------------
# SecKill's Redis layout (docs/DESIGN.md "Redis keys"; common/sk_keys.c)
# ---------------------------------------------------------------------------------------------

RESULT_BUCKET_MS = 60000  # SK_RESULT_BUCKET_MS
RESULT_KEEP_S = 600  # SK_RESULT_KEEP_S
TOKEN_FIELDS = ("user_id", "product_id", "activity_id", "issued_at", "expires_at", "order_id")

# The key names are not written here: they are read from the format table of common/sk_keys.c, the one module that
# owns the layout, so a change of layout is one edit there. tests/unit/test_common_keys.c runs this file with
# --keys-sample and checks that its names equal the C functions' (same table, same arguments).
_KEYS_SOURCE = os.path.join(os.environ.get("SK_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                            "..", ".."), "common", "sk_keys.c")


def _load_key_formats(path=_KEYS_SOURCE):
    """{"NODE": "sk:node:%s", ...}: the `[SK_KEY_X] = "format",` lines of sk_keys.c, with %lld and %u made %d."""
    out = {}
    with open(path) as f:
        for m in re.finditer(r'^\s*\[SK_KEY_([A-Z_]+)\]\s*=\s*"((?:[^"\\]|\\.)*)",', f.read(), re.M):
            out[m.group(1)] = m.group(2).replace("%lld", "%d").replace("%u", "%d")
    for name in ("NODE", "LOGIC_ALIVE", "QUEUE", "NONCE", "TOTAL", "SOLD", "USERS", "TOKENS", "WINS", "SEC_PREFIX",
                 "RESULT", "BLACKLIST_USER", "BLACKLIST_IP", "BLACKLIST_NOTICE", "REPLY"):
        if name not in out:
            raise RuntimeError("%s: no format for SK_KEY_%s" % (path, name))
    return out


KEY_FORMATS = _load_key_formats()
LOGIC_ALIVE_KEY = KEY_FORMATS["LOGIC_ALIVE"]
BLACKLIST_USER_KEY = KEY_FORMATS["BLACKLIST_USER"]
BLACKLIST_IP_KEY = KEY_FORMATS["BLACKLIST_IP"]
BLACKLIST_NOTICE = KEY_FORMATS["BLACKLIST_NOTICE"]


def blacklist_key(kind):
    """The blacklist hash of kind "user" or "ip"."""
    return {"user": BLACKLIST_USER_KEY, "ip": BLACKLIST_IP_KEY}[kind]


def node_key(node_id):
    """The live-node lock of node_id."""
    return KEY_FORMATS["NODE"] % node_id


def nonce_key(aid, uid, nance):
    """The replay guard of (user, nance) for a request to activity aid."""
    return KEY_FORMATS["NONCE"] % (int(aid), int(uid), nance)


def activity_key(aid, name):
    """A key of activity aid: name is one of total, sold, users, tokens, wins, expiry, token_counts, sec (the
    per-second prefix), queue."""
    return KEY_FORMATS[{"sec": "SEC_PREFIX"}.get(name, name.upper())] % int(aid)


def queue_key(aid):
    """The request stream of activity aid (group "logic")."""
    return activity_key(aid, "queue")


def activity_tag_prefix(aid):
    """The common prefix of every key of activity aid (up to and including its hash tag), e.g. for KEYS patterns."""
    f = KEY_FORMATS["TOTAL"] % int(aid)
    return f[:f.index("}") + 1]


def key_glob(name):
    """A KEYS/SCAN pattern matching every key of the format KEY_FORMATS[name] (each argument becomes *)."""
    return re.sub(r"%[ds]", "*", KEY_FORMATS[name])


def reply_channel(node_id, thread):
    """The pub/sub channel of access thread `thread` of node_id."""
    return KEY_FORMATS["REPLY"] % (node_id, int(thread))


def result_key(aid, deadline_ms):
    """The hash holding the stored results of activity aid's requests whose deadline (Redis-clock unix ms) is
    deadline_ms: sk:{a<aid>}:res:<minute of the deadline>, field = request id, value = "code token expires_at"."""
    return KEY_FORMATS["RESULT"] % (int(aid), max(0, int(deadline_ms)) // RESULT_BUCKET_MS)


# Stock buckets of a sharded activity (common/sk_shard.c; the unit test compares bucket_keys_sample with C)

def _crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def bucket_tag(aid, b, k):
    """sk_shard_tag(): bucket b's hash tag (no braces) of activity aid with k buckets."""
    base = "a%d" % int(aid)
    if int(k) <= 1 or int(b) == 0:
        return base
    stripe = lambda tag: (_crc16(tag.encode()) % 16384) * int(k) // 16384
    want = (stripe(base) + int(b)) % int(k)
    for n in range(1000000):
        tag = "%s.%d.%d" % (base, int(b), n)
        if stripe(tag) == want:
            return tag
    return "%s.%d.0" % (base, int(b))


def user_bucket(uid, k):
    """sk_shard_of_user(): FNV-1a of the decimal user id, mod k."""
    if int(k) <= 1:
        return 0
    h = 2166136261
    for c in str(int(uid)).encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h % int(k)


def bucket_split(total, b, k):
    """sk_shard_split(): bucket b's initial share of total."""
    if int(k) <= 1:
        return int(total)
    return int(total) // int(k) + (1 if int(b) < int(total) % int(k) else 0)


def bucket_speed(speed, b, k, sec):
    """sk_shard_speed(): bucket b's wins allowed in unix second sec."""
    if int(k) <= 1:
        return int(speed)
    return int(speed) // int(k) + (1 if (int(b) + int(sec)) % int(k) < int(speed) % int(k) else 0)


def _tagged(name, tag):
    return KEY_FORMATS[name].replace("{a%d}", "{%s}", 1)


def bucket_key(aid, name, b=0, k=1):
    """activity_key() of bucket b (of k): name as there, or move_out, move_in, dry."""
    fmt = {"sec": "SEC_PREFIX"}.get(name, name.upper())
    return _tagged(fmt, None) % bucket_tag(aid, b, k)


def bucket_nonce_key(aid, uid, nance, k=1):
    """nonce_key() in the user's bucket."""
    return _tagged("NONCE", None) % (bucket_tag(aid, user_bucket(uid, k), k), int(uid), nance)


def bucket_result_key(aid, deadline_ms, b=0, k=1):
    """result_key() of bucket b."""
    return _tagged("RESULT", None) % (bucket_tag(aid, b, k), max(0, int(deadline_ms)) // RESULT_BUCKET_MS)


def bucket_keys_sample():
    """The lines tests/unit/test_common_shard.c compares with its own (activity 7, 3 buckets)."""
    out = []
    for b in range(3):
        out += [bucket_tag(7, b, 3), bucket_key(7, "queue", b, 3), bucket_key(7, "total", b, 3),
                bucket_key(7, "move_out", b, 3), bucket_result_key(7, 1700000000000, b, 3)]
    out += [bucket_nonce_key(7, 42, "abc", 3), str(user_bucket(42, 3)), str(user_bucket(1234567, 5))]
    return out


_SCRIPTS_DIR = os.path.join(os.path.dirname(_KEYS_SOURCE), "..", "redis")


def script_names():
    """The Redis scripts of the project: redis/<name>.lua, each embedded into the binaries byte for byte."""
    return sorted(f[:-4] for f in os.listdir(_SCRIPTS_DIR) if f.endswith(".lua"))


def script_source(name):
    """The text of redis/<name>.lua, exactly as the binaries send it."""
    with open(os.path.join(_SCRIPTS_DIR, name + ".lua"), "rb") as f:
        return f.read().decode()


def script_sha(name):
    """The SHA1 Redis knows redis/<name>.lua by (what SCRIPT LOAD answers, what EVALSHA takes)."""
    with open(os.path.join(_SCRIPTS_DIR, name + ".lua"), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def keys_sample():
    """The lines tests/unit/test_common_keys.c compares with its own: one key per name, for fixed arguments."""
    return [node_key("n1"), LOGIC_ALIVE_KEY, queue_key(7), nonce_key(7, 42, "abc")] + \
        [activity_key(7, n) for n in ("total", "sold", "users", "tokens", "wins", "expiry", "token_counts", "sec")] + \
        [result_key(7, 1700000000000), BLACKLIST_USER_KEY, BLACKLIST_IP_KEY, BLACKLIST_NOTICE, reply_channel("n1", 3)]


def result_keep_until(deadline_ms):
    """The unix second at which the bucket of deadline_ms may go (its EXPIREAT)."""
    return (max(0, int(deadline_ms)) // RESULT_BUCKET_MS + 1) * (RESULT_BUCKET_MS // 1000) + RESULT_KEEP_S


def stored_results(redis, aid):
    """{request id: stored result} over every result bucket of activity aid."""
    out = {}
    for k in redis.call("KEYS", result_key(aid, 0).rsplit(":", 1)[0] + ":*") or []:
        h = redis.call("HGETALL", k) or []
        out.update(zip(h[0::2], h[1::2]))
    return out


def token_fields(value):
    """A value of sk:{a<ID>}:tokens ("user_id product_id activity_id issued_at expires_at[ order_id]") as a dict
    keyed by TOKEN_FIELDS, order_id None while the token is live (else its state word: an order id, "cancelled" or
    "expired"); None for None."""
    if value is None:
        return None
    words = value.split(" ")
    if len(words) not in (5, 6) or "" in words:
        raise AssertionError("malformed token value %r" % value)
    return dict(itertools.zip_longest(TOKEN_FIELDS, words))


def token_info(redis, aid, token):
    """token_fields() of the token's field of sk:{a<aid>}:tokens (None when there is none)."""
    return token_fields(redis.call("HGET", activity_key(aid, "tokens"), token))


def user_wins(value):
    """A value of sk:{a<ID>}:users ("wins token expires_at [token expires_at ...]") as (wins, [(token, expires_at)]).
    Fails when the count and the pairs disagree."""
    words = value.split(" ")
    wins, rest = int(words[0]), words[1:]
    if len(rest) != 2 * wins:
        raise AssertionError("users value %r: %d wins, %d words after the count" % (value, wins, len(rest)))
    return wins, [(rest[i], int(rest[i + 1])) for i in range(0, len(rest), 2)]


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def http(method, url, body=None, headers=None, timeout=5, params=None):
    """One HTTP/1.1 request on a fresh connection. Returns (status, headers, parsed) where headers
    is a dict with lowercase names (repeated headers joined with ", ") and parsed is the JSON value
    of the body when it parses, else the raw bytes.

    body: dict (sent form-encoded), str or bytes. params: dict appended to the query string.
    Never raises on an HTTP error status; raises OSError/HTTPException on connection errors.
    """
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    query = u.query
    if params:
        extra = urllib.parse.urlencode(params)
        query = query + "&" + extra if query else extra
    if query:
        path += "?" + query
    hdrs = dict(headers or {})
    lower = {k.lower() for k in hdrs}
    data = None
    if isinstance(body, dict):
        data = urllib.parse.urlencode(body).encode()
        if "content-type" not in lower:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = bytes(body)
    conn = httpclient.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        out_headers = {}
        for k, v in resp.getheaders():
            k = k.lower()
            out_headers[k] = out_headers[k] + ", " + v if k in out_headers else v
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, out_headers, parsed
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Signatures (SPEC §4)
# ---------------------------------------------------------------------------------------------


def user_key(secret, uid):
    """hex(HMAC-SHA256(secret, "user:" + uid))."""
    return hmac.new(secret.encode(), ("user:%d" % int(uid)).encode(), hashlib.sha256).hexdigest()


def sign(secret, scope, uid, pid, t, nance):
    """auth_code = hex(HMAC-SHA256(user_key, scope:uid:pid:t:nance)), user_key as its hex text."""
    msg = "%s:%d:%d:%d:%s" % (scope, int(uid), int(pid), int(t), nance)
    return hmac.new(user_key(secret, uid).encode(), msg.encode(), hashlib.sha256).hexdigest()


def signed_params(secret, scope, uid, pid, t=None, nance=None):
    """The query params of a signed /sec/kill (scope "kill") or /sec/result (scope "result")
    request, with the current time and a fresh random nance unless given."""
    t = int(time.time()) if t is None else int(t)
    nance = nance or secrets.token_hex(8)
    return {
        "product_id": str(pid),
        "user_id": str(uid),
        "time": str(t),
        "nance": nance,
        "auth_code": sign(secret, scope, uid, pid, t, nance),
    }


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--keys-sample"]:
        print("\n".join(keys_sample()))
    elif sys.argv[1:] == ["--bucket-keys-sample"]:
        print("\n".join(bucket_keys_sample()))
