"""The durable audit log: what one line holds, that it holds no secret and
no raw address or key, rotation, and reading it back (tail, since)."""

from __future__ import annotations

import json
from pathlib import Path

from actors.errors import ErrorKind, TransientError
from actors.messages import Attempt, Decision
from actors.ops.audit import AuditLog, audit_dir, audit_record
from actors.ops.privacy import hash_address, hash_key, mask_addresses
from actors.redaction import Redactor
from tests.ops.helpers import ADDRESS, CANARY, run, wired

PAYLOAD = {"to": [ADDRESS], "subject": "Hi", "text": "Hello"}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_decision_is_a_line_with_plan_skips_attempts_and_outcome(tmp_path: Path) -> None:
    # The primary fails with an error that quotes the canary secret and the
    # recipient's address, as a careless provider error body would.
    h, ops, _ = wired({"primary": [TransientError(f"502 from upstream: token={CANARY} rejected for {ADDRESS}")],
                       "backup": []}, tmp_path)

    async def scenario() -> None:
        res = await h.router.invoke("send_email", PAYLOAD, idempotency_key=f"welcome-{ADDRESS}")
        assert res.ok and res.provider == "backup"
        await h.router.invoke("send_email", {"to": []})  # invalid: no provider is called
        await ops.flush_audit()

    run(scenario())
    path = tmp_path / "audit" / "audit-email_sending.jsonl"
    text = path.read_text()
    assert CANARY not in text
    assert ADDRESS not in text and "ann.lee" not in text
    assert f"welcome-{ADDRESS}" not in text
    first, invalid = lines(path)
    assert first["ok"] and first["outcome"] == "ok" and first["provider"] == "backup"
    assert first["key"] == hash_key(f"welcome-{ADDRESS}")
    assert first["candidates"] == ["primary", "backup"]
    assert [(a["provider"], a["ok"], a["error_kind"]) for a in first["attempts"]] == [
        ("primary", False, "transient"), ("backup", True, None)]
    assert all(a["latency_ms"] >= 0 for a in first["attempts"])
    # The error survives, minus the secret and the address (hashed, so it can still be followed).
    assert "502 from upstream" in first["attempts"][0]["error"] and hash_address(ADDRESS) in first["attempts"][0]["error"]
    assert invalid["outcome"] == "invalid_request" and invalid["attempts"] == [] and invalid["candidates"] == []
    assert (path.stat().st_mode & 0o777) == 0o600


def test_the_record_is_scrubbed_even_when_the_provider_did_not_redact() -> None:
    # Defence in depth: the router's audit redactor knows every provider's secrets.
    d = Decision(at=1.5, capability="email_sending", method="send_email", request_id="r", ok=False,
                 idempotency_key=f"lead-{ADDRESS}", error_kind=ErrorKind.ALL_PROVIDERS_FAILED,
                 error=f"every provider failed; last: Bearer {CANARY}",
                 skipped={"backup": f"cooling down after {ADDRESS} bounced"},
                 attempts=[Attempt(provider="primary", ok=False, error_kind=ErrorKind.AUTH,
                                   error=f"401 for api_key={CANARY}&to={ADDRESS}")])
    text = json.dumps(audit_record(d, Redactor([CANARY])))
    assert CANARY not in text and ADDRESS not in text
    assert text.count(hash_address(ADDRESS)) == 2
    assert json.loads(text)["time"] == "1970-01-01T00:00:01.500Z"


def test_addresses_are_masked_whatever_their_shape() -> None:
    text = "to: <Ann.Lee+promo@Mail.Example.co.uk>, bob@example.com; not an address: user@localhost, a@b"
    masked = mask_addresses(text)
    assert "Ann.Lee" not in masked and "bob@" not in masked
    assert hash_address("ann.lee+promo@mail.example.co.uk") in masked  # case-insensitive
    assert "user@localhost" in masked  # no dot in the domain: left alone


def test_rotation_keeps_the_newest_files_and_tail_reads_across_them(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit", "crm_sync", max_bytes=2000, backups=2)

    def decision(i: int) -> Decision:
        return Decision(at=1000.0 + i, capability="crm_sync", method="upsert_contact", request_id=f"r{i:04d}", ok=True,
                        provider="airtable")

    for i in range(60):
        log.observe(decision(i))
        log.flush()
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert files == ["audit-crm_sync.jsonl", "audit-crm_sync.jsonl.1", "audit-crm_sync.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in (tmp_path / "audit").iterdir())
    records, _ = log.tail(12)
    assert [r["request_id"] for r in records] == [f"r{i:04d}" for i in range(48, 60)]
    # More than the current file holds: the rest comes from .1, in order.
    current = len(lines(log.path))
    records, _ = log.tail(current + 3)
    assert [r["request_id"] for r in records] == [f"r{i:04d}" for i in range(60 - current - 3, 60)]



def test_since_follows_rotations_between_two_reads(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit", "crm_sync", max_bytes=2000, backups=5)

    def write(i: int) -> None:
        log.observe(Decision(at=1000.0 + i, capability="crm_sync", method="upsert_contact", request_id=f"r{i:04d}",
                             ok=True, provider="airtable"))
        log.flush()

    for i in range(10):
        write(i)
    _, cursor = log.tail(1)
    for i in range(10, 25):  # two or three rotations
        write(i)
    assert len(log.files()) >= 3
    new, cursor = log.since(cursor)
    assert [r["request_id"] for r in new] == [f"r{i:04d}" for i in range(10, 25)]
    assert log.since(cursor)[0] == []
    write(25)
    assert [r["request_id"] for r in log.since(cursor)[0]] == ["r0025"]


def test_a_disk_that_refuses_writes_drops_lines_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the audit directory should be")
    log = AuditLog(blocker / "audit", "email_sending")
    log.observe(Decision(at=1.0, capability="email_sending", method="send_email", request_id="r", ok=True))
    assert log.flush() == 0
    assert log.dropped == 1 and log.last_error and "NotADirectoryError" in log.last_error
    assert log.status()["last_error"] == log.last_error


def test_where_the_audit_log_lives() -> None:
    assert audit_dir("/var/lib/aicmo/prod") == Path("/var/lib/aicmo/prod/audit")
    assert audit_dir("sqlite:///var/lib/aicmo/state.db") == Path("/var/lib/aicmo/audit")
    assert audit_dir("sqlite:///:memory:") is None
    assert audit_dir("postgres://db/aicmo") is None
    # A database store: the router node's local state directory, per gateway.
    assert audit_dir("postgresql://u@db/aicmo", "prod", env={"AICMO_STATE_DIR": "/srv/aicmo"}) == Path(
        "/srv/aicmo/prod/audit")
    assert audit_dir("~/state") == Path.home() / "state" / "audit"


def test_a_method_the_capability_does_not_have_is_recorded_as_unknown(tmp_path: Path) -> None:
    h, ops, _ = wired({"primary": []}, tmp_path)
    made_up = "lead-4711-for-ann"

    async def scenario() -> None:
        res = await h.router.invoke(made_up, PAYLOAD)
        assert not res.ok and res.error.kind == "unknown_method"
        await ops.flush_audit()

    run(scenario())
    text = (tmp_path / "audit" / "audit-email_sending.jsonl").read_text()
    assert made_up not in text
    (line,) = lines(tmp_path / "audit" / "audit-email_sending.jsonl")
    assert line["method"] == "unknown" and line["outcome"] == "unknown_method"


def test_with_the_deployment_key_hashes_are_hmac_and_a_dictionary_finds_nothing(tmp_path: Path) -> None:
    import hashlib
    import hmac

    key = bytes(range(32))
    h, ops, _ = wired({"primary": [TransientError(f"550 mailbox {ADDRESS} full")], "backup": []}, tmp_path,
                      audit_key=key)
    idem = f"lead-{ADDRESS}-welcome"

    async def scenario() -> None:
        assert (await h.router.invoke("send_email", PAYLOAD, idempotency_key=idem)).ok
        await ops.flush_audit()

    run(scenario())
    (line,) = lines(tmp_path / "audit" / "audit-email_sending.jsonl")
    assert line["key"] == "hmac:" + hmac.new(key, idem.encode(), hashlib.sha256).hexdigest()[:16]
    assert line["key"] == hash_key(idem, key)  # an operator with the key can still find a request
    error = line["attempts"][0]["error"]
    assert hash_address(ADDRESS, key) in error and hash_address(ADDRESS) not in error
    # Whoever reads the file without the key: hashing likely keys and addresses finds nothing.
    guesses = [f"lead-{a}-welcome" for a in (ADDRESS, "ann@example.com", "bob@example.com")]
    assert line["key"] not in {hash_key(g) for g in guesses}
    assert all(hash_address(a) not in error for a in (ADDRESS, "ann@example.com"))


def test_an_outlier_event_is_stamped_with_its_own_time_never_the_writers() -> None:
    """`outlier_record` reads no clock: each kind of event carries the time
    the sweep's clock gave it, so there is nothing to fall back to."""
    import typing

    import msgspec

    from actors.ops.audit import outlier_record
    from actors.policy.outliers.events import OutlierEvent, PanicStarted

    for kind in typing.get_args(OutlierEvent):
        assert "at" in {f.name for f in msgspec.structs.fields(kind) if f.required}, kind.__name__
    record = outlier_record(PanicStarted(at=1_700_000_000.25, available=1, total=3), "email_sending")
    assert (record["event"], record["at"], record["time"]) == ("PanicStarted", 1_700_000_000.25,
                                                               "2023-11-14T22:13:20.250Z")
