"""Differential test: the validator's own decode (``core.tokens.decode_verified``) against PyJWT's ``decode``.

The first-seen path no longer calls ``jwt.decode``: it restates PyJWT's decode rules (see the module docstring
of ``core/tokens.py``). Here both run on the same tokens and must give the same answer: the same claims when
they accept, the same exception class, code and description when they refuse. The other side is
``tests/reference_validation.py``: the previous path, PyJWT's ``decode_complete`` with the same options plus
this project's rules. Tokens:

- every token of the attack corpus (``tests/test_attack_corpus.py``, its cases and set-ups as they are);
- generated ones (hypothesis, through the fuzzing module's strategies and more): any claims, any header, any
  mutation of a genuine token, any bytes as header or payload signed with the issuer's real key, any
  segment encoding, under several policies (options PyJWT reads: ``require``, ``verify_*``, ``strict_aud``,
  leeway, audience lists);
- valid tokens of many shapes, which both must accept with the same claims;
- logout tokens, whose validator uses the same ``decode_verified`` with other options.

Keys are real and served over loopback HTTP (``tests/jwks.py``); each side has its own JWKS client. The new
side runs with its verified-claims cache off, so every token takes the first-seen path (its header cache
stays on: that is part of the path). Example counts scale with the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests import test_attack_corpus as corpus
from tests import test_fuzz_tokens as fuzz
from tests.jwks import DROP, JWKSServer
from tests.reference_validation import ReferenceAccessTokenValidator, ReferenceLogoutTokenValidator
from tokenversion import conf
from tokenversion.core.errors import TokenRejected, Unavailable
from tokenversion.core.keys import ResilientJWKClient
from tokenversion.core.logout_tokens import LogoutTokenPolicy, LogoutTokenValidator
from tokenversion.core.tokens import AccessTokenValidator, DecodeRules, TokenPolicy

pytestmark = pytest.mark.django_db
API = "tokenversion-api"
BACKCHANNEL = "tokenversion-backchannel"
# Five times the profile's example count: 200 by default, 10,000 with HYPOTHESIS_PROFILE=thorough.
MANY = hypothesis_settings(max_examples=5 * hypothesis_settings.default.max_examples)

Outcome = tuple[Any, ...]


def outcome(validate: Callable[[str], Any], raw: str) -> Outcome:
    """What a caller sees: the claims, or the exception's class, code and description."""
    try:
        return ("accepted", validate(raw))
    except (TokenRejected, Unavailable) as exc:
        return ("refused", type(exc).__name__, exc.code, str(exc))


Clients = tuple[ResilientJWKClient, ResilientJWKClient]


def new_clients(server: JWKSServer) -> Clients:
    """One JWKS client for each side. A test's examples share them: a client per example would open a
    connection per example, thousands under HYPOTHESIS_PROFILE=thorough."""
    return ResilientJWKClient(server.jwks_url), ResilientJWKClient(server.jwks_url)


class Pair:
    """The validator and the reference for one policy, each with its own JWKS client."""

    def __init__(self, policy: TokenPolicy, clients: Clients) -> None:
        self.new = AccessTokenValidator(dataclasses.replace(policy, claims_cache_size=0), jwk_client=clients[0])
        self.reference = ReferenceAccessTokenValidator(policy, clients[1])

    def check(self, raw: str) -> Outcome:
        new = outcome(self.new.validate, raw)
        reference = outcome(self.reference.validate, raw)
        assert new == reference, raw
        return new


def base_policy() -> TokenPolicy:
    return conf.get_settings().token_policy()


# Policies that change what PyJWT is asked to check; each is a TokenPolicy a service could be built with.
POLICY_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "more required claims": {"required_claims": ("exp", "iat", "nbf", "jti", "sid")},
    "no required claims": {"required_claims": ()},
    "exp not verified": {"extra_options": {"verify_exp": False}},
    "iat and nbf not verified": {"extra_options": {"verify_iat": False, "verify_nbf": False}},
    "aud not verified": {"extra_options": {"verify_aud": False}},
    "iss not verified": {"extra_options": {"verify_iss": False}},
    "sub and jti not verified": {"extra_options": {"verify_sub": False, "verify_jti": False}},
    "strict aud": {"extra_options": {"strict_aud": True}},
    "minimum key length enforced": {"extra_options": {"enforce_minimum_key_length": True}},
    "no leeway": {"leeway": 0.0},
    "two audiences": {"audience": ("account", API)},
    "no payload typ rule": {"token_type": None},
}


@pytest.fixture(params=list(POLICY_VARIANTS), ids=list(POLICY_VARIANTS))
def pair(request, issuer) -> Pair:
    return Pair(dataclasses.replace(base_policy(), **POLICY_VARIANTS[request.param]), new_clients(issuer))


@pytest.fixture
def default_pair(issuer) -> Pair:
    return Pair(base_policy(), new_clients(issuer))


@pytest.fixture
def clients(issuer) -> Clients:
    return new_clients(issuer)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rs256(server: JWKSServer, header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = server.key.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def header_json(server: JWKSServer, **extra: Any) -> bytes:
    return json.dumps({"alg": "RS256", "typ": "JWT", "kid": server.key.kid, **extra}).encode()


# --- the attack corpus -------------------------------------------------------------------------------------

CORPUS_TOKENS = [case for case in corpus.CASES if not case.header]  # the others are Authorization headers


@pytest.fixture(scope="module")
def corpus_parts():
    attacker = corpus.attacker_server()
    yield attacker, corpus.corpus_keys(attacker)
    attacker.close()


@pytest.mark.parametrize("case", CORPUS_TOKENS, ids=[f"{c.attack}: {c.name}" for c in CORPUS_TOKENS])
def test_attack_corpus_token_gets_the_same_answer(jwks_server, corpus_parts, tv_settings, case):
    attacker, keys = corpus_parts
    ctx = corpus.Ctx(server=jwks_server, attacker=attacker, keys=keys, tv_settings=tv_settings)
    if case.setup is not None:
        case.setup(ctx)  # may change the issuer's keys or the settings the policy is built from
    result = Pair(base_policy(), new_clients(jwks_server)).check(case.make(ctx))
    # Not a comparison of two validators that refuse everything at the first check: each side refuses for
    # the corpus's own reason, or accepts a token that only the revocation check or the identifier rules
    # after the validator refuse (those are not part of what is compared here).
    if case.attack in ("revoked", "identity-claims", "version-claim"):
        assert result[0] == "accepted" or result[3] == case.detail, result
    else:
        assert result[0] == "refused" and result[3] == case.detail, result


# --- generated tokens ----------------------------------------------------------------------------------------


# The fuzzing module's claim strategies, plus claims only PyJWT's rules look at (jti) or that it reads
# differently (dates as numeric strings with signs, spaces or underscores, which int() takes).
DATE_STRINGS = st.sampled_from([" 9999999999 ", "+9999999999", "9_999_999_999", "1e10", "0x10", "٣"])
CLAIM_VALUES = {
    **fuzz.CLAIM_VALUES,
    "jti": st.text(max_size=10) | fuzz.JSON,
    "exp": fuzz.CLAIM_VALUES["exp"] | DATE_STRINGS,
    "nbf": fuzz.CLAIM_VALUES["nbf"] | DATE_STRINGS,
    "iat": fuzz.CLAIM_VALUES["iat"] | DATE_STRINGS,
}
CHANGES = st.dictionaries(
    st.sampled_from(sorted(CLAIM_VALUES)) | st.text(max_size=8), st.just(DROP) | fuzz.JSON, max_size=4
).flatmap(
    lambda changes: st.fixed_dictionaries(
        {k: (st.just(DROP) | CLAIM_VALUES[k]) if k in CLAIM_VALUES else st.just(v) for k, v in changes.items()}
    )
)


def _signed_with_changes(server: JWKSServer, changes: dict[str, Any]) -> str:
    now = int(time.time())
    claims = server.claims()
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = fuzz.resolve(value, now, server.issuer)
    return fuzz.sign(server, {"alg": "RS256", "typ": "JWT", "kid": server.key.kid}, claims)


@MANY
@given(changes=CHANGES)
def test_any_payload_signed_with_the_real_key(jwks_server, default_pair, changes):
    default_pair.check(_signed_with_changes(jwks_server, changes))


@given(changes=CHANGES)  # the profile's count for each of the policies
def test_any_payload_under_every_policy(jwks_server, pair, changes):
    pair.check(_signed_with_changes(jwks_server, changes))


@MANY
@given(changes=fuzz.HEADER_CHANGES)
def test_any_header_signed_with_the_real_key(jwks_server, default_pair, changes):
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": jwks_server.key.kid}
    for name, value in changes.items():
        if value is DROP:
            header.pop(name, None)
        else:
            header[name] = value
    token = fuzz.sign(jwks_server, header, jwks_server.claims())
    default_pair.check(token)
    if header.get("b64", True) is False:
        # b64=false with the payload segment empty, as a detached JWS would be sent.
        head, _, signature = token.split(".")
        default_pair.check(f"{head}..{signature}")


@MANY
@given(mutations=st.lists(fuzz.MUTATIONS, min_size=1, max_size=3))
def test_any_mutation_of_a_genuine_token(jwks_server, default_pair, mutations):
    token = jwks_server.mint()
    for kind, position, char in mutations:
        i = position % max(len(token), 1)
        token = {
            "replace": token[:i] + char + token[i + 1:],
            "insert": token[:i] + char + token[i:],
            "delete": token[:i] + token[i + 1:],
            "truncate": token[:i],
            "swap": token[:i] + token[i + 1:i + 2] + token[i:i + 1] + token[i + 2:],
        }[kind]
    default_pair.check(token)


# Bytes a payload or header could be: JSON as Python writes it (NaN, Infinity), duplicate members, other
# encodings, arbitrary bytes, nested structures; all signed with the issuer's real key.
def _payload_bytes(server: JWKSServer) -> st.SearchStrategy[bytes]:
    claims = server.claims()
    plain = json.dumps(claims).encode()
    return st.one_of(
        st.just(plain),
        st.binary(max_size=64),
        st.just(plain[:-1] + b',"sub":"mallory"}'),
        st.just(plain.replace(b'"token_version": 0', b'"token_version": NaN')),
        st.just(plain.replace(b'"exp": ', b'"exp": -Infinity, "x": ')),
        st.just(json.dumps(claims).encode("utf-16")),
        st.just(b"\xef\xbb\xbf" + plain),
        st.just(b" " + plain + b"\n"),
        st.just(json.dumps([claims]).encode()),
        st.just(plain[:-1] + b',"x":"\xff"}'),
        st.just(plain[:-1] + b',"x":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        fuzz.JSON.map(lambda value: json.dumps(value).encode()),
    )


SEGMENT_EDITS = st.sampled_from(["none", "spare bits", "length 1 mod 4", "padding", "standard alphabet",
                                 "empty", "non-ascii", "whitespace"])


def _edit(segment: str, edit: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if edit == "spare bits" and segment and len(segment) % 4 in (2, 3):
        return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]
    return {
        "length 1 mod 4": segment + "A" * ((1 - len(segment)) % 4),
        "padding": segment + "=" * (-len(segment) % 4),
        "standard alphabet": segment.replace("-", "+").replace("_", "/") + "+/",
        "empty": "",
        "non-ascii": segment + "é",
        "whitespace": segment + " ",
    }.get(edit, segment)


@MANY
@given(data=st.data(), edits=st.tuples(SEGMENT_EDITS, SEGMENT_EDITS, SEGMENT_EDITS))
def test_any_bytes_and_any_encoding_signed_with_the_real_key(jwks_server, default_pair, data, edits):
    header = data.draw(st.one_of(
        st.just(header_json(jwks_server)),
        st.just(header_json(jwks_server)[:-1] + b', "x": 1}'),
        st.just(header_json(jwks_server, b64=False, crit=["b64"])),
    ))
    token = rs256(jwks_server, header, data.draw(_payload_bytes(jwks_server)))
    segments = [_edit(segment, edit) for segment, edit in zip(token.split("."), edits, strict=True)]
    default_pair.check(".".join(segments))


# --- dates at the edges of the leeway, on a frozen clock ---------------------------------------------------

FROZEN_NOW = 1_800_000_000.25  # a fraction of a second: int() truncation and float comparison both matter
EDGES = [-6, -5.5, -5.25, -5, -4.75, -4, -0.5, 0, 0.5, 4, 4.75, 5, 5.25, 5.5, 6]


@pytest.fixture
def frozen_clock(monkeypatch):
    """One wall clock for both sides: ``time.time`` (the validator, the logout rules) and PyJWT's
    ``datetime.now``; the monotonic clock of the caches is left alone."""
    import datetime as dt

    import jwt.api_jwt

    class FrozenDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.fromtimestamp(FROZEN_NOW, tz)

    monkeypatch.setattr(time, "time", lambda: FROZEN_NOW)
    monkeypatch.setattr(jwt.api_jwt, "datetime", FrozenDatetime)
    return FROZEN_NOW


EDGE_DATE = st.one_of(
    st.sampled_from(EDGES).map(lambda o: FROZEN_NOW + o),
    st.sampled_from(EDGES).map(lambda o: int(FROZEN_NOW + o)),
    st.sampled_from(EDGES).map(lambda o: str(int(FROZEN_NOW + o))),
    st.just(DROP),
)


@MANY
@given(exp=EDGE_DATE, iat=EDGE_DATE, nbf=EDGE_DATE, leeway=st.sampled_from([0.0, 5.0]))
def test_dates_at_the_edges_of_the_leeway(jwks_server, clients, frozen_clock, exp, iat, nbf, leeway):
    pair = Pair(dataclasses.replace(base_policy(), leeway=leeway), clients)
    claims = jwks_server.claims()
    for name, value in (("exp", exp), ("iat", iat), ("nbf", nbf)):
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    pair.check(fuzz.sign(jwks_server, {"alg": "RS256", "typ": "JWT", "kid": jwks_server.key.kid}, claims))


# --- valid tokens ----------------------------------------------------------------------------------------------

VALID_CHANGES = st.fixed_dictionaries({}, optional={
    "aud": st.sampled_from([API, [API], ["account", API], [API, "web", "other"]]),
    "exp": st.integers(60, 86_400).map(fuzz.Rel) | st.floats(60, 86_400).map(fuzz.Rel),
    "iat": st.integers(-86_400, 0).map(fuzz.Rel) | st.floats(-86_400, 0).map(fuzz.Rel),
    "nbf": st.integers(-86_400, 0).map(fuzz.Rel) | st.just(DROP),
    "sid": st.just(DROP) | st.text(min_size=1, max_size=20),
    "jti": st.just(DROP) | st.text(max_size=20),
    "azp": fuzz.JSON,
    "realm_access": fuzz.JSON,
    "resource_access": fuzz.JSON,
    "extra": fuzz.JSON,
})
VALID_HEADERS = st.fixed_dictionaries({}, optional={
    "typ": st.sampled_from(["JWT", "at+jwt", "AT+JWT", "application/at+jwt", DROP]),
    "x5t": st.text(max_size=10),
    "cty": st.just("JWT"),
})


@MANY
@given(changes=VALID_CHANGES, header_changes=VALID_HEADERS)
def test_valid_tokens_are_accepted_by_both_with_the_same_claims(jwks_server, default_pair, changes, header_changes):
    now = int(time.time())
    claims = jwks_server.claims()
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = fuzz.resolve(value, now, jwks_server.issuer)
    header: dict[str, Any] = {"alg": "RS256", "kid": jwks_server.key.kid}
    header.update({k: v for k, v in header_changes.items() if v is not DROP})
    result = default_pair.check(fuzz.sign(jwks_server, header, claims))
    assert result == ("accepted", json.loads(json.dumps(claims)))


def test_a_genuine_token_under_every_policy_variant(jwks_server, pair):
    """The control for the policy variants: the same genuine token, both sides, every policy."""
    result = pair.check(jwks_server.mint(sid="s-1", nbf=int(time.time()) - 60))
    # strict_aud: PyJWT wants the audience as one string, and the policy's is a tuple; so it refuses.
    assert result[0] == ("refused" if pair.new._rules.strict_aud else "accepted")


# --- ECDSA keys ------------------------------------------------------------------------------------------------


@MANY
@given(signature=st.one_of(st.none(), st.binary(max_size=80), st.sampled_from([bytes(64), b"\xff" * 64])),
       header_alg=st.sampled_from(["ES256", "RS256", "ES384"]), kid=st.sampled_from(["ec-1", "key-1"]))
def test_ecdsa_tokens(jwks_server, clients, corpus_parts, tv_settings, signature, header_alg, kid):
    _, keys = corpus_parts
    jwks_server.keys = [jwks_server.keys[0], keys["ec"]]
    tv_settings(ALGORITHMS=["RS256", "ES256"])
    pair = Pair(base_policy(), clients)
    ctx = corpus.Ctx(server=jwks_server, attacker=None, keys=keys, tv_settings=tv_settings)  # type: ignore[arg-type]
    token = ctx.es256(signature=signature, kid=kid)
    if header_alg != "ES256":
        _, payload, sig = token.split(".")
        token = ".".join([b64(json.dumps({"alg": header_alg, "typ": "JWT", "kid": kid}).encode()), payload, sig])
    pair.check(token)


# --- logout tokens ---------------------------------------------------------------------------------------------


@MANY
@given(changes=CHANGES, header_typ=st.sampled_from(["logout+jwt", "JWT", DROP]))
def test_logout_tokens_get_the_same_answer(jwks_server, clients, changes, header_typ):
    policy = LogoutTokenPolicy(issuer=jwks_server.issuer, audience=(BACKCHANNEL,))
    new = LogoutTokenValidator(policy, clients[0])
    reference = ReferenceLogoutTokenValidator(policy, clients[1])
    now = int(time.time())
    claims = jwks_server.logout_claims()
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            value = fuzz.resolve(value, now, jwks_server.issuer)
            claims[name] = BACKCHANNEL if value == API else value
    header = {"alg": "RS256", "kid": jwks_server.key.kid, "typ": header_typ}
    token = fuzz.sign(jwks_server, {k: v for k, v in header.items() if v is not DROP}, claims)
    assert outcome(new.validate, token) == outcome(reference.validate, token)


# --- the rules object --------------------------------------------------------------------------------------


def test_decode_rules_merge_options_as_pyjwt_does():
    rules = DecodeRules.from_options({"verify_exp": False}, algorithms=["RS256"], audience=[API], issuer="i",
                                     leeway=5)
    # Left out, an option means PyJWT's default: sub and jti are checked, nothing is required.
    assert (rules.verify_exp, rules.verify_iat, rules.verify_sub, rules.verify_jti, rules.require) == (
        False, True, True, True, ())
    with pytest.raises(ValueError, match="verify_signature"):
        DecodeRules.from_options({"verify_signature": False}, algorithms=["RS256"], audience=[API], issuer="i",
                                 leeway=5)
    with pytest.raises(ValueError, match="allow-list"):
        DecodeRules.from_options({}, algorithms=[], audience=[API], issuer="i", leeway=5)
