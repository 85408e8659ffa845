"""Token verification through live `switchboard serve` nodes in strict mode (docs/BACKEND.md,
"Authentication"): tokens minted at test time with PyJWT (or by hand, for the attacks), keys
written to temporary PEM / JWKS files. Accepted tokens put the socket's session in
SESSION_POOL; every refused token gets CONNECT_ERROR `{"message": "unauthorized", "data":
{"reason": ...}}` and leaves no session behind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from livehelpers import wait_until
from owui import (  # noqa: F401  (owui is a fixture)
    SECRET,
    Client,
    owui,
    start_node,
    wait_ready,
)

OTHER_SECRET = "a-different-secret-0123456789abcdef-0123456789"
ISSUER = "https://owui.example/issuer"
AUDIENCE = "switchboard-live"


# ---------------------------------------------------------------------------------------
# Keys and tokens
# ---------------------------------------------------------------------------------------


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def claims(user: str = "u1", **extra) -> dict:
    c = {"id": user, "jti": uuid.uuid4().hex, "iat": int(time.time())}
    c.update(extra)
    return c


def hs_raw(header_seg: str, payload_seg: str, key: bytes, digest=hashlib.sha256) -> str:
    sig = hmac.new(key, f"{header_seg}.{payload_seg}".encode(), digest).digest()
    return f"{header_seg}.{payload_seg}.{b64u(sig)}"


def hs_token(header: dict, payload: bytes, key: bytes = SECRET.encode(), digest=hashlib.sha256) -> str:
    return hs_raw(b64u(json.dumps(header).encode()), b64u(payload), key, digest)


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key, kid: str, alg: str) -> dict:
    conv = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    d = conv.to_jwk(key.public_key(), as_dict=True)
    d.update({"kid": kid, "alg": alg, "use": "sig"})
    return d


@pytest.fixture(scope="module")
def keys():
    return {"rsa": rsa_key(), "rsa2": rsa_key(), "rsa-stranger": rsa_key(), "ec": ec_key(), "ec-stranger": ec_key()}


class Auth:
    """Nodes in strict mode on the test's redis-server; connect attempts; the pool."""

    def __init__(self, owui, tmp_path):
        self.owui = owui
        self.tmp = tmp_path
        self.n = 0

    def node(self, *flags: str, secret: str | None = None):
        self.n += 1
        node_id = f"auth{self.n:02d}"
        n = start_node(self.owui.servers, self.owui.redis_server.url, node_id, "--auth-mode", "strict", *flags,
                       secret=secret)
        wait_ready([n])
        return n

    def file(self, name: str, data: bytes | str) -> str:
        p = self.tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(p)

    def accepted(self, node, auth, label: str) -> str:
        c = Client(node, label, auth=auth)
        self.owui.clients.append(c)
        try:
            c.connect()
        except Exception as e:
            raise AssertionError(f"{label}: refused ({e!r}; connect_error {c.connect_errors!r})") from None
        want = auth["token"]
        uid = jwt.decode(want, options={"verify_signature": False})
        uid = str(uid.get("id", uid.get("sub")))
        wait_until(lambda: c.sid in self.owui.session_pool(), what=f"{label}: session in SESSION_POOL")
        assert self.owui.session_pool()[c.sid]["id"] == uid, f"{label}: {self.owui.session_pool()[c.sid]}"
        return c.sid

    def refused(self, node, auth, label: str) -> str | None:
        """None if refused as documented, else what went wrong."""
        c = Client(node, label, auth=auth)
        self.owui.clients.append(c)
        try:
            payload = c.connect_refused()
        except AssertionError as e:
            return str(e)
        if not (isinstance(payload, dict) and payload.get("message") == "unauthorized"
                and isinstance(payload.get("data"), dict) and "reason" in payload["data"]):
            return f"{label}: CONNECT_ERROR payload {payload!r}"
        return None


@pytest.fixture
def auth(owui, tmp_path):
    return Auth(owui, tmp_path)


# ---------------------------------------------------------------------------------------
# Accepted
# ---------------------------------------------------------------------------------------


def test_hmac_tokens_with_the_secret(auth):
    hs_all = auth.node("--jwt-algorithms", "HS256,HS384,HS512", secret=SECRET)
    hs_default = auth.node(secret=SECRET)
    sids = set()
    for alg in ("HS256", "HS384", "HS512"):
        sids.add(auth.accepted(hs_all, {"token": jwt.encode(claims(f"u-{alg}"), SECRET, algorithm=alg)}, alg))
    sids.add(auth.accepted(hs_default, {"token": jwt.encode(claims("u-default"), SECRET, algorithm="HS256")}, "HS256 default"))
    # an Open WebUI token: id, jti, iat, no exp; and one with exp
    sids.add(auth.accepted(hs_default, {"token": jwt.encode(claims("u-exp", exp=int(time.time()) + 600), SECRET)}, "with exp"))
    problems = [p for p in (
        auth.refused(hs_default, {"token": jwt.encode(claims("u-384"), SECRET, algorithm="HS384")}, "HS384 not configured"),
        auth.refused(hs_default, {"token": jwt.encode(claims("u-512"), SECRET, algorithm="HS512")}, "HS512 not configured"),
    ) if p]
    assert problems == []
    assert set(auth.owui.session_pool()) == sids


def test_rs256_and_es256_with_a_pem_public_key(auth, keys):
    rsa_node = auth.node("--jwt-public-key", auth.file("rsa.pem", pem_public(keys["rsa"])))
    ec_node = auth.node("--jwt-public-key", auth.file("ec.pem", pem_public(keys["ec"])))
    sids = {
        auth.accepted(rsa_node, {"token": jwt.encode(claims("u-rs"), keys["rsa"], algorithm="RS256")}, "RS256"),
        auth.accepted(ec_node, {"token": jwt.encode(claims("u-es"), keys["ec"], algorithm="ES256")}, "ES256"),
    }
    problems = [p for p in (
        auth.refused(rsa_node, {"token": jwt.encode(claims(), keys["rsa-stranger"], algorithm="RS256")}, "RS256 other key"),
        auth.refused(ec_node, {"token": jwt.encode(claims(), keys["ec-stranger"], algorithm="ES256")}, "ES256 other key"),
        auth.refused(rsa_node, {"token": jwt.encode(claims(), keys["ec"], algorithm="ES256")}, "ES256 on an RSA node"),
        auth.refused(ec_node, {"token": jwt.encode(claims(), keys["rsa"], algorithm="RS256")}, "RS256 on an EC node"),
        auth.refused(rsa_node, {"token": jwt.encode(claims(), SECRET, algorithm="HS256")}, "HS256 on an RSA-only node"),
    ) if p]
    assert problems == []
    assert set(auth.owui.session_pool()) == sids


def test_jwks_kid_selects_the_key(auth, keys):
    jwks = {"keys": [jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["rsa2"], "rsa-2", "RS256"), jwk(keys["ec"], "ec-1", "ES256")]}
    node = auth.node("--jwt-jwks", auth.file("jwks.json", json.dumps(jwks)))
    sids = {
        auth.accepted(node, {"token": jwt.encode(claims("k1"), keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})}, "rsa-1"),
        auth.accepted(node, {"token": jwt.encode(claims("k2"), keys["rsa2"], algorithm="RS256", headers={"kid": "rsa-2"})}, "rsa-2"),
        auth.accepted(node, {"token": jwt.encode(claims("k3"), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})}, "ec-1"),
    }
    problems = [p for p in (
        auth.refused(node, {"token": jwt.encode(claims(), keys["rsa2"], algorithm="RS256", headers={"kid": "rsa-1"})},
                     "kid rsa-1, signed by rsa-2's key"),
        auth.refused(node, {"token": jwt.encode(claims(), keys["rsa"], algorithm="RS256", headers={"kid": "nope"})},
                     "unknown kid, signed by a known key"),
        auth.refused(node, {"token": jwt.encode(claims(), keys["rsa-stranger"], algorithm="RS256", headers={"kid": "nope"})},
                     "unknown kid, unknown key"),
        auth.refused(node, {"token": jwt.encode(claims(), keys["ec"], algorithm="ES256", headers={"kid": "rsa-1"})},
                     "ES256 with an RSA kid"),
    ) if p]
    assert problems == []
    assert set(auth.owui.session_pool()) == sids


def test_user_claims_leeway_issuer_and_audience(auth):
    now = int(time.time())
    plain = auth.node(secret=SECRET)
    strict_time = auth.node("--jwt-leeway", "0", secret=SECRET)
    custom = auth.node("--jwt-user-claim", "uid,sub", secret=SECRET)
    scoped = auth.node("--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, secret=SECRET)

    def tok(c):
        return {"token": jwt.encode(c, SECRET, algorithm="HS256")}

    sub_only = claims("x")
    sub_only.pop("id")
    sub_only["sub"] = "from-sub"
    sids = {
        auth.accepted(plain, tok(sub_only), "sub when there is no id"),
        auth.accepted(plain, tok(claims("lee-exp", exp=now - 10)), "expired 10 s ago, default leeway 30 s"),
        auth.accepted(plain, tok(claims("lee-nbf", nbf=now + 10)), "nbf in 10 s, default leeway 30 s"),
        auth.accepted(scoped, tok(claims("scoped", iss=ISSUER, aud=AUDIENCE)), "iss and aud"),
        auth.accepted(scoped, tok(claims("scoped2", iss=ISSUER, aud=["other", AUDIENCE])), "aud list"),
    }
    c = Client(custom, "uid claim", auth=tok({"uid": "via-uid", "id": "ignored", "jti": "j", "iat": now}))
    auth.owui.clients.append(c)
    c.connect()
    wait_until(lambda: c.sid in auth.owui.session_pool(), what="uid-claim session")
    assert auth.owui.session_pool()[c.sid]["id"] == "via-uid", "--jwt-user-claim uid,sub: uid first"
    sids.add(c.sid)
    problems = [p for p in (
        auth.refused(strict_time, tok(claims("lee0", exp=now - 10)), "expired 10 s ago, --jwt-leeway 0"),
        auth.refused(plain, tok(claims("late", exp=now - 120)), "expired 120 s ago"),
        auth.refused(plain, tok(claims("early", nbf=now + 120)), "nbf in 120 s"),
        auth.refused(custom, tok(claims("only-id")), "only id with --jwt-user-claim uid,sub"),
        auth.refused(scoped, tok(claims("s", iss=ISSUER, aud="other")), "wrong audience"),
        auth.refused(scoped, tok(claims("s", iss=ISSUER)), "missing audience"),
        auth.refused(scoped, tok(claims("s", iss="https://evil.example", aud=AUDIENCE)), "wrong issuer"),
        auth.refused(scoped, tok(claims("s", aud=AUDIENCE)), "missing issuer"),
    ) if p]
    assert problems == []
    assert set(auth.owui.session_pool()) == sids


def std_b64_payload() -> str:
    """A valid claims set whose standard base64 (unpadded) has '+' or '/' (not base64url)."""
    for n in range(1, 64):
        c = claims("victim", q="?" * n + ">" * n)
        seg = base64.b64encode(json.dumps(c).encode()).decode().rstrip("=")
        if "+" in seg or "/" in seg:
            return seg
    raise AssertionError("no payload with + or / found")


# ---------------------------------------------------------------------------------------
# The attack table
# ---------------------------------------------------------------------------------------


def test_attack_table_is_refused_and_leaves_no_session(auth, keys):
    now = int(time.time())
    hs = auth.node(secret=SECRET)
    rsa_pem = pem_public(keys["rsa"])
    rsa_node = auth.node("--jwt-public-key", auth.file("rsa.pem", rsa_pem))
    jwks = {"keys": [jwk(keys["rsa"], "rsa-1", "RS256")]}
    jwks_node = auth.node("--jwt-jwks", auth.file("jwks.json", json.dumps(jwks)))
    scoped = auth.node("--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, secret=SECRET)

    good = jwt.encode(claims("victim"), SECRET, algorithm="HS256")
    h, p, s = good.split(".")
    payload = json.dumps(claims("victim")).encode()
    hs_header = {"alg": "HS256", "typ": "JWT"}
    attacks = [
        # alg none
        (hs, f"{b64u(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64u(payload)}.", "alg none, no signature"),
        (hs, hs_token({"alg": "none"}, payload), "alg none with an HMAC signature"),
        (hs, f"{b64u(json.dumps({'alg': 'None'}).encode())}.{b64u(payload)}.", "alg None"),
        (hs, f"{b64u(json.dumps({'alg': 'NONE'}).encode())}.{b64u(payload)}.{s}", "alg NONE with a signature"),
        # algorithm confusion: HS256 signed with the RSA public key (PEM) as the secret
        (rsa_node, hs_token(hs_header, payload, key=rsa_pem), "HS256 signed with the RSA public key PEM"),
        (rsa_node, hs_token(hs_header, payload, key=rsa_pem.strip()), "HS256 signed with the PEM (stripped)"),
        (hs, jwt.encode(claims(), SECRET, algorithm="HS384"), "HS384 not configured"),
        (hs, jwt.encode(claims(), keys["rsa"], algorithm="RS256"), "RS256 on an HMAC node"),
        # time
        (hs, jwt.encode(claims(exp=now - 3600), SECRET), "expired"),
        (hs, jwt.encode(claims(nbf=now + 3600), SECRET), "not yet valid (nbf)"),
        (hs, hs_token(hs_header, json.dumps(claims(exp="tomorrow")).encode()), "exp not a number"),
        # issuer / audience
        (scoped, jwt.encode(claims(iss=ISSUER, aud="someone-else"), SECRET), "wrong audience"),
        (scoped, jwt.encode(claims(iss="https://evil.example", aud=AUDIENCE), SECRET), "wrong issuer"),
        # structure
        (hs, good[:-6], "truncated signature"),
        (hs, f"{h}.{p}", "two segments"),
        (hs, f"{h}.{p}.{s}.{s}", "four segments"),
        (hs, good[: len(good) // 2], "cut in half"),
        (hs, "", "empty token"),
        # tampering
        (hs, f"{h}.{b64u(json.dumps(claims('admin')).encode())}.{s}", "tampered payload"),
        (hs, f"{h}.{p}.{jwt.encode(claims('victim'), OTHER_SECRET).split('.')[2]}", "bad signature (other secret)"),
        (hs, f"{h}.{p}.", "empty signature"),
        (hs, jwt.encode(claims(), OTHER_SECRET), "signed with another secret"),
        # keys
        (jwks_node, jwt.encode(claims(), keys["rsa"], algorithm="RS256", headers={"kid": "unknown-kid"}), "unknown kid"),
        (jwks_node, jwt.encode(claims(), keys["rsa-stranger"], algorithm="RS256", headers={"kid": "rsa-1"}),
         "known kid, foreign key"),
        # size: a validly signed token over 8 KiB
        (hs, jwt.encode(claims(pad="x" * 9000), SECRET), "huge token (> 8 KiB)"),
        # claims that are not an object
        (hs, hs_token(hs_header, b"[1, 2, 3]"), "claims: array"),
        (hs, hs_token(hs_header, b'"victim"'), "claims: string"),
        (hs, hs_token(hs_header, b"42"), "claims: number"),
        (hs, hs_token(hs_header, b"null"), "claims: null"),
        (hs, hs_token(hs_header, b"{not json"), "claims: not JSON"),
        (hs, hs_raw(b64u(b"[]"), p, SECRET.encode()), "header: array"),
        (hs, hs_raw(b64u(b"not json"), p, SECRET.encode()), "header: not JSON"),
        # base64url
        (hs, hs_raw(h, p + "==", SECRET.encode()), "padding in a segment"),
        (hs, hs_raw(h, std_b64_payload(), SECRET.encode()), "standard base64 alphabet (+ /)"),
        (hs, hs_raw(h, p[:-1] + "*", SECRET.encode()), "character outside base64url"),
        (hs, hs_raw(h, p + "A", SECRET.encode()), "impossible base64 length"),
        # user id
        (hs, jwt.encode({"jti": "j", "iat": now}, SECRET), "no id and no sub"),
        (hs, jwt.encode({"id": "", "jti": "j", "iat": now}, SECRET), "empty id"),
    ]
    # controls: each node accepts a good token (so the refusals are about the tokens)
    controls = {
        auth.accepted(hs, {"token": good}, "control hs"),
        auth.accepted(rsa_node, {"token": jwt.encode(claims("c-rs"), keys["rsa"], algorithm="RS256")}, "control rsa"),
        auth.accepted(jwks_node, {"token": jwt.encode(claims("c-jw"), keys["rsa"], algorithm="RS256",
                                                      headers={"kid": "rsa-1"})}, "control jwks"),
        auth.accepted(scoped, {"token": jwt.encode(claims("c-sc", iss=ISSUER, aud=AUDIENCE), SECRET)}, "control scoped"),
    }
    assert len(jwt.encode(claims(pad="x" * 9000), SECRET)) > 8192
    problems = []
    for node, token, label in attacks:
        problem = auth.refused(node, {"token": token}, label)
        if problem:
            problems.append(problem)
    for auth_value, label in (({}, "no token"), ({"token": None}, "token null"), ({"token": 42}, "token a number"),
                              ({"token": ["a", "b"]}, "token a list"), (None, "no auth object")):
        problem = auth.refused(hs, auth_value, label)
        if problem:
            problems.append(problem)
    assert problems == [], "accepted or not refused as documented:\n" + "\n".join(problems)
    pool = auth.owui.session_pool()
    assert set(pool) == controls, f"sessions left by refused tokens: {[v for k, v in pool.items() if k not in controls]}"
    assert {v["id"] for v in pool.values()} == {"victim", "c-rs", "c-jw", "c-sc"}
