"""Whether a cluster survives its head node: the pure findings of
actors/ops/gcs.py, from hand-built facts (no Ray)."""

from __future__ import annotations

import socket

from actors.ops.gcs import GcsFacts, WorkerWait, gcs_findings, local_redis_findings, ping_redis, state_is_local
from actors.ops.doctor import check_local_redis
from actors.supervisor.findings import build_self_check
from actors.config import parse_config
from actors.specs import build_spec


def severities(facts: GcsFacts) -> list[tuple[str, str]]:
    return [(f.severity, f.subject) for f in gcs_findings(facts)]


def test_a_multi_node_cluster_without_gcs_persistence_is_told_how_to_get_it() -> None:
    [finding] = gcs_findings(GcsFacts(nodes=3, storage="memory"))
    assert finding.severity == "warning" and "not fault tolerant" in finding.problem
    for needed in ("RAY_REDIS_ADDRESS", "RAY_external_storage_namespace", "RAY_gcs_storage=rocksdb",
                   "gcsFaultToleranceOptions", "RAY_gcs_rpc_server_reconnect_timeout_s=300"):
        assert needed in (finding.fix or ""), needed


def test_a_single_node_cluster_has_nothing_to_make_fault_tolerant() -> None:
    assert severities(GcsFacts(nodes=1, storage="memory")) == [("info", "GCS storage: memory")]


def test_a_fault_tolerant_gcs_is_ok_and_workers_that_give_up_early_are_named() -> None:
    facts = GcsFacts(nodes=3, storage="redis", redis_address="10.0.0.5:6379", storage_namespace="prod",
                     workers=[WorkerWait(node="10.0.0.2 (aaaa)", timeout_s=None),
                              WorkerWait(node="10.0.0.3 (bbbb)", timeout_s=600)])
    found = gcs_findings(facts)
    assert [f.severity for f in found] == ["ok", "warning"]
    assert found[0].subject == "GCS storage: redis at 10.0.0.5:6379, namespace prod"
    assert "10.0.0.2 (aaaa) (default 60 s)" in found[1].problem and "bbbb" not in found[1].problem
    assert "RAY_gcs_rpc_server_reconnect_timeout_s=300" in (found[1].fix or "")
    waiting = gcs_findings(GcsFacts(nodes=2, storage="rocksdb", workers=[WorkerWait(node="w", timeout_s=300)]))
    assert [f.severity for f in waiting] == ["ok", "ok"]


def test_a_redis_that_does_not_answer_is_critical() -> None:
    found = gcs_findings(GcsFacts(nodes=2, storage="redis", redis_address="10.0.0.5:6379",
                                  redis_error="ConnectionRefusedError: Connection refused",
                                  workers=[WorkerWait(node="w", timeout_s=600)]))
    assert [f.severity for f in found] == ["ok", "critical", "ok"]
    assert "does not answer" in found[1].problem and "Connection refused" in found[1].problem


def test_sqlite_state_on_a_multi_node_clusters_head_is_critical() -> None:
    assert state_is_local("sqlite:///var/lib/aicmo/state.db") and state_is_local("/var/lib/aicmo")
    assert not state_is_local("postgresql://aicmo@db:5432/aicmo")
    on_head = GcsFacts(nodes=2, storage="memory", state_url="sqlite:///s.db", state_local=True, state_on_head=True)
    [_, state] = gcs_findings(on_head)
    assert state.severity == "critical" and "head node" in state.problem and "postgresql://" in (state.fix or "")
    unknown = GcsFacts(nodes=2, storage="memory", state_url="/srv/state", state_local=True)
    assert gcs_findings(unknown)[1].severity == "critical"  # where the supervisor runs is not known: assume the worst
    elsewhere = GcsFacts(nodes=2, storage="memory", state_url="/srv/state", state_local=True, state_on_head=False)
    assert gcs_findings(elsewhere)[1].severity == "warning"
    single = GcsFacts(nodes=1, storage="memory", state_url="/srv/state", state_local=True, state_on_head=True)
    assert [f.severity for f in gcs_findings(single)] == ["info"]


def test_the_self_check_reports_the_warnings_and_criticals_as_recommendations() -> None:
    spec = build_spec(parse_config({"capabilities": {"email_sending": {"providers": [
        {"name": "sim", "adapter": "simulated"}]}}}, env={}))
    facts = GcsFacts(nodes=2, storage="memory", state_url="sqlite:///s.db", state_local=True, state_on_head=True)
    report = build_self_check(spec, {}, {}, 1.0, gcs=facts)
    gcs = [r for r in report.recommendations if r.capability == "*"]
    assert [r.severity for r in gcs] == ["critical", "warning"]  # most severe first
    assert "not fault tolerant" in gcs[1].problem and gcs[1].fix.startswith("back the GCS with Redis")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_without_a_cluster_says_the_redis_in_its_environment_does_not_answer() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    assert ping_redis(address, timeout_s=1) is not None
    assert local_redis_findings({}) == []
    [finding] = check_local_redis({"RAY_REDIS_ADDRESS": address})
    assert (finding.check, finding.status, finding.subject) == ("head", "problem", f"GCS Redis {address}")
    assert "does not answer" in finding.detail
    assert ping_redis("no-port-here") == "not a host:port address: 'no-port-here'"


def test_ping_redis_speaks_resp_to_a_server_that_answers() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        import threading

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                assert conn.recv(64) == b"*1\r\n$4\r\nPING\r\n"
                conn.sendall(b"+PONG\r\n")

        t = threading.Thread(target=answer)
        t.start()
        assert ping_redis(f"127.0.0.1:{port}", timeout_s=5) is None
        t.join()


def test_a_state_directory_every_node_mounts_is_not_a_file_on_one_machine() -> None:
    from actors.ops.reach import NodeInfo
    from actors.ops.shared_store import NodeView, SharedStoreReport
    from actors.ops.gcs import with_shared_store

    facts = GcsFacts(nodes=2, storage="memory", state_url="/srv/state", state_local=True, state_on_head=True)
    views = [NodeView(node=NodeInfo(node_id=n, address="10.0.0.1"), sees=True) for n in ("a", "b")]
    mounted = with_shared_store(facts, SharedStoreReport(url="/srv/state", nodes=views))
    assert [f.severity for f in gcs_findings(mounted)] == ["warning"]  # the GCS only
    pinned = with_shared_store(facts, SharedStoreReport(url="/srv/state", pinned=True))
    assert [f.severity for f in gcs_findings(pinned)] == ["warning", "critical"]
    assert with_shared_store(facts, None) is facts
