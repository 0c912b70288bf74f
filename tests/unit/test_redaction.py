from actors.redaction import MASK, Redactor


def test_known_secrets_are_masked_wherever_they_appear() -> None:
    r = Redactor(["hunter2-password", "tok"])
    assert r("login failed for bot:hunter2-password@host") == f"login failed for bot:{MASK}@host"
    assert r("tok is too short to mask safely") == "tok is too short to mask safely"
    assert r(None) is None and r("") == ""


def test_credential_patterns_are_masked_even_when_unknown() -> None:
    r = Redactor()
    assert r("Authorization: Bearer abc.DEF-123") == f"Authorization: Bearer {MASK}"
    assert r("GET /v2/validate?api_key=zz99&email=a") == f"GET /v2/validate?api_key={MASK}&email=a"
    assert r('{"password": "p@ss"}') == f'{{"password": "{MASK}"}}'


def test_a_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    assert Redactor(["abcd", "abcdefgh"])("x abcdefgh y") == f"x {MASK} y"
