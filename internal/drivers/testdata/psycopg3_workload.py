"""psycopg 3 workload for internal/drivers (see doc.go there).

Threads, one connection each, prepare_threshold=0: every query is a named
prepared statement (_pg3_N), and every rollback makes psycopg send
DEALLOCATE ALL over the extended protocol. Connections are not autocommit
(psycopg's default): each unit of work ends with commit() or rollback().
Exits 1 with the failing client and check on the first wrong answer.
"""

import os
import sys
import threading
import time
import traceback

import psycopg
from psycopg import errors, sql

HOST, PORT = os.environ["PP_HOST"], int(os.environ["PP_PORT"])
USER, PASSWORD, DB = os.environ["PP_USER"], os.environ["PP_PASSWORD"], os.environ["PP_DB"]
SCHEMA, CLIENTS = os.environ["PP_SCHEMA"], int(os.environ["PP_CLIENTS"])
# PostgreSQL itself, for the ALTER made behind the proxy's back.
DIRECT_HOST, DIRECT_PORT = os.environ["PP_DIRECT_HOST"], int(os.environ["PP_DIRECT_PORT"])

SELECTS, INSERT_TX, ROWS_PER_TX, COPY_ROWS, BIG = 20, 4, 3, 500, 100_000
BARRIER_TIMEOUT = 120
barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT)
lock = threading.Lock()
stats = {"cached_plan_errors": 0, "slowest_cancel": 0.0}


def timeout_of(c):
    return 50001 + c  # ms; shown by PostgreSQL as "<n>ms"


def connect(timeout_ms):
    return psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB,
        options=f"-c search_path={SCHEMA} -c statement_timeout={timeout_ms}",
        prepare_threshold=0, connect_timeout=30)


def expect(c, what, got, want):
    if got != want:
        raise AssertionError(f"client {c}: {what}: got {got!r}, want {want!r}")


def check_settings(c, conn, timeout_ms, when):
    row = conn.execute(
        "SELECT current_setting('statement_timeout'), current_setting('search_path')").fetchone()
    conn.commit()
    expect(c, f"settings {when}", row, (f"{timeout_ms}ms", SCHEMA))


def select_star(conn, c):
    return conn.execute("SELECT * FROM wide WHERE id = %s", (c % 5 + 1,)).fetchone()


def alter_phase(c, conn, column, direct, before, after):
    """Every client runs its prepared SELECT * (before), client 0 adds
    column (through its own connection, or directly on PostgreSQL), then
    every client must read after, allowed one 0A000 "cached plan must not
    change result type" and its retry (after the rollback psycopg sends
    DEALLOCATE ALL and prepares again)."""
    for _ in range(2):
        expect(c, f"SELECT * before adding {column}", select_star(conn, c), before)
    conn.commit()
    barrier.wait()
    if c == 0:
        alter = f"ALTER TABLE wide ADD COLUMN {column}"
        if direct:
            with psycopg.connect(host=DIRECT_HOST, port=DIRECT_PORT, user=USER, password=PASSWORD, dbname=DB,
                                 options=f"-c search_path={SCHEMA}", autocommit=True) as d:
                d.execute(alter)
        else:
            conn.execute(alter)
            conn.commit()
    barrier.wait()
    tolerated = False
    for i in range(3):
        try:
            row = select_star(conn, c)
        except errors.FeatureNotSupported:  # 0A000 cached plan must not change result type
            if tolerated:
                raise
            tolerated = True
            with lock:
                stats["cached_plan_errors"] += 1
            conn.rollback()
            row = select_star(conn, c)
        conn.commit()
        expect(c, f"SELECT * after adding {column} ({i})", row, after)


def client(c):
    t_ms = timeout_of(c)
    with connect(t_ms) as conn:
        check_settings(c, conn, t_ms, "at start")

        # Prepared selects with parameters.
        for k in range(SELECTS):
            row = conn.execute("SELECT %s::int * 1000 + %s::int, %s::text", (c, k, f"c{c}")).fetchone()
            expect(c, "prepared select", row, (c * 1000 + k, f"c{c}"))
        conn.commit()

        # Inserts in explicit transactions.
        seq = 0
        for _ in range(INSERT_TX):
            with conn.transaction():
                for _ in range(ROWS_PER_TX):
                    seq += 1
                    conn.execute("INSERT INTO items (client, seq, val) VALUES (%s, %s, %s)", (c, seq, f"c{c}-s{seq}"))
        rows = conn.execute("SELECT seq, val FROM items WHERE client = %s ORDER BY seq", (c,)).fetchall()
        conn.commit()
        expect(c, "own rows", rows, [(s, f"c{c}-s{s}") for s in range(1, seq + 1)])

        # An error inside a transaction, ROLLBACK (psycopg then sends
        # DEALLOCATE ALL), and the connection used again; twice.
        for attempt in range(2):
            conn.execute("INSERT INTO items (client, seq, val) VALUES (%s, %s, 'rolled back')", (c, -1 - attempt))
            try:
                conn.execute("SELECT 1 / (%s::int - %s::int)", (c, c))
                raise AssertionError(f"client {c}: division by zero did not fail")
            except errors.DivisionByZero:
                pass
            conn.rollback()
            n = conn.execute("SELECT count(*) FROM items WHERE client = %s AND seq < 0", (c,)).fetchone()[0]
            expect(c, "rolled-back rows", n, 0)
            row = conn.execute("SELECT %s::int * 1000 + %s::int, %s::text", (c, 99, f"c{c}")).fetchone()
            expect(c, "prepared select after rollback", row, (c * 1000 + 99, f"c{c}"))
            conn.commit()
            check_settings(c, conn, t_ms, "after rollback")

        # A statement cancelled by the driver (from another thread, as an
        # application's timeout does), most of them while waiting for one
        # of the 3 server connections: only that statement ends. In
        # autocommit, so that the statement is all there is to cancel: in
        # a transaction the BEGIN the driver sends first may wait for a
        # server connection until the very moment the cancel comes, and a
        # cancel that lands between the BEGIN and the statement cancels
        # nothing, directly as through the proxy. For the same reason the
        # statement is prepared first: psycopg sends its Parse and its
        # Bind in two round trips, and the Parse of a statement new to the
        # proxy waits for a server connection too.
        conn.autocommit = True
        conn.execute("SELECT pg_sleep(%s)", (0,))
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        start = time.monotonic()
        try:
            conn.execute("SELECT pg_sleep(%s)", (20,))
            raise AssertionError(f"client {c}: pg_sleep(20) was not cancelled")
        except errors.QueryCanceled:
            pass
        finally:
            timer.cancel()
        conn.autocommit = False
        took = time.monotonic() - start
        if took > 15:
            raise AssertionError(f"client {c}: the cancel ended pg_sleep(20) only after {took:.1f}s")
        stats["slowest_cancel"] = max(stats["slowest_cancel"], took)
        row = conn.execute("SELECT %s::int * 1000 + %s::int, %s::text", (c, 98, f"c{c}")).fetchone()
        expect(c, "prepared select after a cancel", row, (c * 1000 + 98, f"c{c}"))
        conn.commit()
        check_settings(c, conn, t_ms, "after a cancel")

        # SET LOCAL ends with its transaction; RESET ALL goes back to the
        # startup values.
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '1234ms'")
            v = conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
            expect(c, "SET LOCAL", v, "1234ms")
        check_settings(c, conn, t_ms, "after SET LOCAL")
        conn.execute("RESET ALL")
        conn.commit()
        check_settings(c, conn, t_ms, "after RESET ALL")

        # ALTER TABLE ... ADD COLUMN while every client has SELECT *
        # prepared: first by client 0 through the proxy, then behind the
        # proxy's back (a migration run straight on PostgreSQL).
        wid = c % 5 + 1
        alter_phase(c, conn, "extra int NOT NULL DEFAULT 7", False, (wid, f"w{wid}"), (wid, f"w{wid}", 7))
        alter_phase(c, conn, "extra2 int NOT NULL DEFAULT 8", True, (wid, f"w{wid}", 7), (wid, f"w{wid}", 7, 8))

        # COPY in and out.
        with conn.cursor() as cur:
            with cur.copy("COPY copied (client, n, txt) FROM STDIN") as cp:
                for n in range(1, COPY_ROWS + 1):
                    cp.write_row((c, n, f"c{c} n{n}"))
            conn.commit()
            got = []
            with cur.copy(sql.SQL("COPY (SELECT n, txt FROM copied WHERE client = {} ORDER BY n) TO STDOUT").format(c)) as cp:
                for row in cp.rows():
                    got.append(row)
            conn.commit()
        expect(c, "COPY out", got, [(str(n), f"c{c} n{n}") for n in range(1, COPY_ROWS + 1)])

        # A 100,000-row result.
        if c % 3 == 0:
            rows = conn.execute("SELECT g FROM generate_series(1, %s::int) g", (BIG,)).fetchall()
            conn.commit()
            expect(c, "big result count", len(rows), BIG)
            expect(c, "big result sum", sum(r[0] for r in rows), BIG * (BIG + 1) // 2)

        check_settings(c, conn, t_ms, "at end")


def timeout_in_force():
    """A short statement_timeout given at startup still cancels after a
    rollback (DEALLOCATE ALL) and RESET ALL."""
    with connect(2001) as conn:
        conn.execute("SELECT 1")
        conn.rollback()
        conn.execute("RESET ALL")
        conn.commit()
        check_settings(-1, conn, 2001, "short timeout after RESET ALL")
        start = time.monotonic()
        try:
            conn.execute("SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep(20) was not cancelled by statement_timeout=2001ms")
        except errors.QueryCanceled:
            pass
        conn.rollback()
        took = time.monotonic() - start
        if took > 15:
            raise AssertionError(f"statement_timeout=2001ms cancelled pg_sleep only after {took:.1f}s")


def brief(failure):
    """The first and last lines of a failure: its client and its error
    (the first few failures are shown in full)."""
    lines = failure.strip().splitlines()
    return f"{lines[0]} {lines[-1]}" if len(lines) > 1 else failure


def main():
    failures = []

    def run(c):
        try:
            client(c)
        except Exception:
            with lock:
                failures.append(f"client {c} failed:\n{traceback.format_exc()}")
            barrier.abort()

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(c,), name=f"client-{c}") for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not failures:
        try:
            timeout_in_force()
        except Exception:
            failures.append(f"timeout check failed:\n{traceback.format_exc()}")
    if failures:
        # A broken barrier in the others is a consequence: show real causes first.
        failures.sort(key=lambda f: "BrokenBarrierError" in f)
        for i, f in enumerate(failures):
            print(f if i < 3 else brief(f), file=sys.stderr)
        print(f"FAIL psycopg {psycopg.__version__}: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print(f"OK psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}): {CLIENTS} clients, "
          f"cached_plan_errors={stats['cached_plan_errors']}, slowest cancel {stats['slowest_cancel']:.1f}s, "
          f"{time.monotonic() - start:.1f}s")


main()
