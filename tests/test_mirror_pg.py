"""What only the PostgreSQL mirror has: JSONB columns, indexes the planner uses,
migrations under concurrent start, dropped connections, outages (a forwarder cut and
restored, the shared server never stopped), the factory, and a daemon that keeps
working while its database is away.  The rest of the suite runs in test_mirror.py
against both backends."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mofsim_core.config import Config, load_config
from mofsim_core.mirror import MIGRATIONS, PG_MIGRATIONS, Mirror
from mofsim_core.mirror_factory import database_url, mirror_location, open_mirror
from mofsim_core.mirror_sqlite import SqliteMirror
from mofsim_core.redact import mask_url
from spool import Spool
from spool.errors import DatabaseError, ValidationError
from tests.pg_helpers import TcpProxy, pg_schema, raw_execute, require_pg

pytest.importorskip("psycopg")

from mofsim_core.mirror_pg import PostgresMirror  # noqa: E402
from tests.test_mirror import events, record  # noqa: E402


@pytest.fixture
def pg() -> Iterator[tuple[str, str]]:
    with pg_schema() as schema_dsn:
        yield schema_dsn


def test_interface_and_json_columns_are_jsonb(pg: tuple[str, str]) -> None:
    schema, dsn = pg
    m: Mirror = PostgresMirror(dsn)  # mypy checks the class against the protocol here
    try:
        m.upsert_task(
            record(
                "t1",
                result={"energy": -1.5, "forces": [[0.0, 0.1, 0.2]]},
                parameters={"fmax": 0.001, "optimizer": "FIRE"},
            )
        )
        m.append_logs("t1", events("INFO"))
    finally:
        m.close()
    types = dict(
        (r[0], r[1])
        for r in raw_execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s",
            [schema],
        )
    )
    for column in ("error", "result", "parameters", "options"):
        assert types[f"tasks.{column}"] == "jsonb", column
    assert types["task_logs.extra"] == "jsonb"
    assert types["tasks.gpu_id"] == "integer" and types["task_logs.seq"] == "bigint"
    # Stored as real JSON documents: PostgreSQL's JSON operators work on them.
    rows = raw_execute(
        f"SELECT result->'energy', result->'forces'->0->>2 FROM {schema}.tasks "
        f'WHERE parameters @> \'{{"optimizer": "FIRE"}}\''
    )
    assert rows == [(-1.5, "0.2")]


def test_list_filters_are_served_by_indexes(pg: tuple[str, str]) -> None:
    schema, dsn = pg
    PostgresMirror(dsn).close()
    indexed = {
        r[0]
        for r in raw_execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'tasks'",
            [schema],
        )
    }
    for column in ("status", "task_type", "model", "created_at"):
        assert any(f"({column})" in d for d in indexed), column
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
        for where in (
            "status = 'RUNNING'",
            "task_type = 'optimization'",
            "model = 'emt'",
            "created_at > '2025'",
        ):
            plan = "\n".join(
                r[0] for r in conn.execute(f"EXPLAIN SELECT * FROM tasks WHERE {where}").fetchall()
            )
            assert "Index" in plan, (where, plan)


def test_migrations_are_versioned_and_applied_once_under_a_concurrent_start(
    pg: tuple[str, str],
) -> None:
    schema, dsn = pg
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)  # the two backends move in step
    opened: list[PostgresMirror] = []
    problems: list[str] = []

    def start() -> None:
        try:
            opened.append(PostgresMirror(dsn))
        except Exception as exc:  # reported below
            problems.append(repr(exc))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == [] and len(opened) == 4
    assert all(m.schema_version() == len(PG_MIGRATIONS) for m in opened)
    for m in opened:
        m.close()
    versions = raw_execute(f"SELECT version, applied_at FROM {schema}.schema_version")
    assert [v for v, _ in versions] == list(range(1, len(PG_MIGRATIONS) + 1))
    assert all(str(at).endswith("Z") for _, at in versions)


def test_nul_characters_do_not_make_writes_fail(pg: tuple[str, str]) -> None:
    _, dsn = pg
    m = PostgresMirror(dsn)
    try:
        m.upsert_task(
            record(
                "t1",
                structure_name="MOF\x00-5",
                parameters={"note": "a\x00b", "lit": "\\u0000 stays"},
            )
        )
        m.append_logs("t1", [{"seq": 1, "message": "bad\x00byte", "extra": {"k\x00": 1}}])
        got = m.get_task("t1")
        assert got is not None and got["structure_name"] == "MOF\ufffd-5"
        assert got["parameters"] == {"note": "a\ufffdb", "lit": "\\u0000 stays"}
        (log,) = m.task_logs("t1")
        assert log["message"] == "bad\ufffdbyte" and log["extra"] == {"k\ufffd": 1}
    finally:
        m.close()


def test_a_connection_dropped_by_the_server_is_replaced(pg: tuple[str, str]) -> None:
    _, dsn = pg
    app = f"mofsim_{uuid.uuid4().hex[:12]}"
    m = PostgresMirror(f"{dsn}&application_name={app}")
    try:
        m.upsert_task(record("t1"))
        killed = raw_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [app],
        )
        assert killed and all(ok for (ok,) in killed)
        got = m.get_task("t1")  # the stale connection is noticed and replaced
        assert got is not None
        raw_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [app],
        )
        m.upsert_task({"task_id": "t1", "status": "RUNNING"})
        assert m.list_tasks(status="RUNNING")[1] == 1
    finally:
        m.close()


def test_an_unreachable_database_raises_database_error_then_heals(pg: tuple[str, str]) -> None:
    schema, _ = pg
    proxy = TcpProxy()
    m = PostgresMirror(proxy.url(schema))
    try:
        m.upsert_task(record("t1"))
        proxy.cut()
        for call in (
            m.ping,
            lambda: m.get_task("t1"),
            lambda: m.list_tasks(),
            lambda: m.upsert_task(record("t2")),
            lambda: m.append_logs("t1", events("INFO")),
            m.counts_by_status,
        ):
            with pytest.raises(DatabaseError):
                call()
        with pytest.raises(DatabaseError, match="cannot connect"):
            PostgresMirror(proxy.url(schema))
        proxy.restore()
        m.upsert_task(record("t2"))  # the same object, no reopening
        assert m.list_tasks()[1] == 2
    finally:
        m.close()
        proxy.close()


# --- choosing the backend ------------------------------------------------------------------


def test_factory_picks_sqlite_without_a_database_url(tmp_path: Path) -> None:
    paths = Spool(tmp_path / "spool").paths
    for setting in (Config(), None, "", "  "):
        m = open_mirror(setting, paths)
        assert isinstance(m, SqliteMirror) and m.path == paths.state_dir / "mirror.sqlite"
        m.close()
    assert mirror_location(Config(), paths) == str(paths.state_dir / "mirror.sqlite")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/x",
        "sqlite:///tmp/m.db",
        "/var/db.sqlite",
        "postgresql://[::1/db",
        "postgresql://h/db?bogus=1",
    ],
)
def test_factory_refuses_other_urls(tmp_path: Path, url: str) -> None:
    paths = Spool(tmp_path / "spool").paths
    with pytest.raises(ValidationError) as info:
        open_mirror(url, paths)
    assert info.value.field == "database_url"
    with pytest.raises(ValidationError):
        database_url(Config(database_url=url))


def test_mask_url_hides_the_password() -> None:
    assert mask_url("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_url("postgresql://me@db/x") == "postgresql://me@db/x"


def test_factory_opens_postgres_from_the_config_file_or_the_environment(
    pg: tuple[str, str], tmp_path: Path
) -> None:
    _, dsn = pg
    paths = Spool(tmp_path / "spool").paths
    toml = tmp_path / "mofsim.toml"
    toml.write_text(f"database_url = {json.dumps(dsn.replace('postgresql://', 'postgres://'))}\n")
    for cfg in (load_config(toml, env={}), load_config(env={"MOFSIM_DATABASE_URL": dsn})):
        m = open_mirror(cfg, paths)
        try:
            assert isinstance(m, PostgresMirror)
            m.upsert_task(record("t1"))
            assert m.get_task("t1") is not None
        finally:
            m.close()
    assert not (paths.state_dir / "mirror.sqlite").exists()


def test_mirror_rebuild_command_fills_postgres(pg: tuple[str, str], tmp_path: Path) -> None:
    from mofsim_cli.main import app
    from tests.test_mirror_writer import n_events, queue_task, run_task

    _, dsn = pg
    sp = Spool(tmp_path / "spool")
    done, waiting = queue_task(sp), queue_task(sp)
    run_task(sp, done)
    r = CliRunner().invoke(
        app,
        ["mirror", "rebuild", "--json", "--spool", str(sp.root)],
        env={"MOFSIM_DATABASE_URL": dsn},
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tasks"] == 2 and out["database"] == dsn
    m = PostgresMirror(dsn)
    try:
        row = m.get_task(done.task_id)
        assert row is not None and row["status"] == "COMPLETED"
        assert len(m.task_logs(done.task_id)) == n_events(sp, done.task_id)
        assert m.get_task(waiting.task_id) is not None
    finally:
        m.close()
    assert not (sp.paths.state_dir / "mirror.sqlite").exists()


# --- the daemon ------------------------------------------------------------------------------


def test_daemon_refuses_a_bad_database_url_and_starts_without_its_database(tmp_path: Path) -> None:
    from mofsimd.lifecycle import Lifecycle

    sp = Spool(tmp_path / "spool")
    life = Lifecycle(sp, Config(database_url="mysql://db/x"))
    with pytest.raises(ValidationError):
        life.open()
    life.close()

    require_pg()
    proxy = TcpProxy()
    proxy.cut()
    life = Lifecycle(sp, Config(database_url=proxy.url()))
    life.open()  # starts anyway; the writer keeps trying
    try:
        assert life.mirror is None and life.writer is not None
        assert not life.writer.flush(10) and life.writer.down
    finally:
        life.close()
        proxy.close()


def test_daemon_keeps_working_through_database_outages(pg: tuple[str, str], tmp_path: Path) -> None:
    """The card's trial: tasks run while PostgreSQL is away (at start, then mid-run) and
    every task and log line is in the mirror once it is back."""
    from tests.daemon_helpers import Daemon, quick_job, status, wait_for
    from tests.test_mirror_writer import n_events

    schema, dsn = pg
    sp = Spool(tmp_path / "spool")
    proxy = TcpProxy()
    proxy.cut()  # down before the daemon starts
    direct = PostgresMirror(dsn)

    def mirrored(task_ids: list[str]) -> bool:
        for tid in task_ids:
            row = direct.get_task(tid)
            if (
                row is None
                or row["status"] != "COMPLETED"
                or len(direct.task_logs(tid, limit=1000)) != n_events(sp, tid)
            ):
                return False
        return True

    try:
        with Daemon(sp.root, database_url=proxy.url(schema)):
            first = quick_job()
            sp.submit(first)
            wait_for(lambda: status(sp, first.task_id) == "COMPLETED", what="first task")
            assert direct.get_task(first.task_id) is None
            proxy.restore()
            wait_for(lambda: mirrored([first.task_id]), what="catch-up after start")

            proxy.cut()  # down mid-run
            later = [quick_job() for _ in range(3)]
            for job in later:
                sp.submit(job)
            wait_for(
                lambda: all(status(sp, j.task_id) == "COMPLETED" for j in later),
                what="tasks during the outage",
            )
            assert not mirrored([j.task_id for j in later])
            proxy.restore()
            wait_for(lambda: mirrored([j.task_id for j in later]), what="catch-up")
    finally:
        direct.close()
        proxy.close()
