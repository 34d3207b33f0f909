"""psycopg2 workload for internal/drivers (see doc.go there).

Threads, one connection each. psycopg2 speaks only the simple query
protocol and binds parameters on the client, so its prepared selects are
SQL-level PREPARE / EXECUTE / DEALLOCATE inside one transaction (what
transaction pooling allows). Connections are not autocommit (psycopg2's
default). Exits 1 with the failing client and check on the first wrong
answer.
"""

import io
import os
import sys
import threading
import time
import traceback

import psycopg2
from psycopg2 import errors

HOST, PORT = os.environ["PP_HOST"], int(os.environ["PP_PORT"])
USER, PASSWORD, DB = os.environ["PP_USER"], os.environ["PP_PASSWORD"], os.environ["PP_DB"]
SCHEMA, CLIENTS = os.environ["PP_SCHEMA"], int(os.environ["PP_CLIENTS"])
# PostgreSQL itself, for the ALTER made behind the proxy's back.
DIRECT_HOST, DIRECT_PORT = os.environ["PP_DIRECT_HOST"], int(os.environ["PP_DIRECT_PORT"])

SELECTS, INSERT_TX, ROWS_PER_TX, COPY_ROWS, BIG = 20, 4, 3, 500, 100_000
barrier = threading.Barrier(CLIENTS, timeout=120)
lock = threading.Lock()
stats = {"slowest_cancel": 0.0}


def connect(timeout_ms):
    return psycopg2.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB,
        options=f"-c search_path={SCHEMA} -c statement_timeout={timeout_ms}",
        connect_timeout=30)


def expect(c, what, got, want):
    if got != want:
        raise AssertionError(f"client {c}: {what}: got {got!r}, want {want!r}")


def one(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchone()


def all_rows(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def check_settings(c, conn, timeout_ms, when):
    row = one(conn, "SELECT current_setting('statement_timeout'), current_setting('search_path')")
    conn.commit()
    expect(c, f"settings {when}", row, (f"{timeout_ms}ms", SCHEMA))


def prepared_selects(c, conn, base):
    # PREPARE lives on the server connection of this transaction only.
    with conn.cursor() as cur:
        cur.execute("PREPARE sel (int, int, text) AS SELECT $1 * 1000 + $2, $3")
        for k in range(SELECTS):
            cur.execute("EXECUTE sel (%s, %s, %s)", (c, base + k, f"c{c}"))
            expect(c, "prepared select", cur.fetchone(), (c * 1000 + base + k, f"c{c}"))
        cur.execute("DEALLOCATE sel")
    conn.commit()


def alter_phase(c, conn, column, direct, before, after):
    """Every client reads SELECT * (before), client 0 adds column (through
    its own connection, or directly on PostgreSQL), then every client
    must read after. psycopg2 prepares nothing, so no 0A000 is allowed."""
    wid = c % 5 + 1
    expect(c, f"SELECT * before adding {column}", one(conn, "SELECT * FROM wide WHERE id = %s", (wid,)), before)
    conn.commit()
    barrier.wait()
    if c == 0:
        alter = f"ALTER TABLE wide ADD COLUMN {column}"
        if direct:
            d = psycopg2.connect(host=DIRECT_HOST, port=DIRECT_PORT, user=USER, password=PASSWORD, dbname=DB,
                                 options=f"-c search_path={SCHEMA}")
            try:
                with d.cursor() as cur:
                    cur.execute(alter)
                d.commit()
            finally:
                d.close()
        else:
            with conn.cursor() as cur:
                cur.execute(alter)
            conn.commit()
    barrier.wait()
    for i in range(3):
        expect(c, f"SELECT * after adding {column} ({i})", one(conn, "SELECT * FROM wide WHERE id = %s", (wid,)), after)
        conn.commit()


def client(c):
    t_ms = 50001 + c
    conn = connect(t_ms)
    try:
        check_settings(c, conn, t_ms, "at start")
        prepared_selects(c, conn, 0)
        # Parameters bound by the driver, plain queries.
        for k in range(SELECTS):
            expect(c, "select", one(conn, "SELECT %s * 1000 + %s, %s", (c, k, f"c{c}")), (c * 1000 + k, f"c{c}"))
        conn.commit()

        seq = 0
        for _ in range(INSERT_TX):
            with conn.cursor() as cur:
                for _ in range(ROWS_PER_TX):
                    seq += 1
                    cur.execute("INSERT INTO items (client, seq, val) VALUES (%s, %s, %s)", (c, seq, f"c{c}-s{seq}"))
            conn.commit()
        rows = all_rows(conn, "SELECT seq, val FROM items WHERE client = %s ORDER BY seq", (c,))
        conn.commit()
        expect(c, "own rows", rows, [(s, f"c{c}-s{s}") for s in range(1, seq + 1)])

        for attempt in range(2):
            with conn.cursor() as cur:
                cur.execute("INSERT INTO items (client, seq, val) VALUES (%s, %s, 'rolled back')", (c, -1 - attempt))
                try:
                    cur.execute("SELECT 1 / (%s - %s)", (c, c))
                    raise AssertionError(f"client {c}: division by zero did not fail")
                except errors.DivisionByZero:
                    pass
            conn.rollback()
            expect(c, "rolled-back rows", one(conn, "SELECT count(*) FROM items WHERE client = %s AND seq < 0", (c,)), (0,))
            conn.commit()
            prepared_selects(c, conn, 100)
            check_settings(c, conn, t_ms, "after rollback")

        # A statement cancelled by the driver (from another thread, as an
        # application's timeout does), most of them while waiting for one
        # of the 3 server connections: only that statement ends. In
        # autocommit, so that the statement is all there is to cancel: in
        # a transaction the BEGIN the driver sends first may wait for a
        # server connection until the very moment the cancel comes, and a
        # cancel that lands between the BEGIN and the statement cancels
        # nothing, directly as through the proxy.
        conn.autocommit = True
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        start = time.monotonic()
        try:
            one(conn, "SELECT pg_sleep(20)")
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
        expect(c, "select after a cancel", one(conn, "SELECT %s * 1000 + %s, %s", (c, 98, f"c{c}")), (c * 1000 + 98, f"c{c}"))
        conn.commit()
        check_settings(c, conn, t_ms, "after a cancel")

        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = '1234ms'")
            cur.execute("SELECT current_setting('statement_timeout')")
            expect(c, "SET LOCAL", cur.fetchone(), ("1234ms",))
        conn.commit()
        check_settings(c, conn, t_ms, "after SET LOCAL")
        with conn.cursor() as cur:
            cur.execute("RESET ALL")
        conn.commit()
        check_settings(c, conn, t_ms, "after RESET ALL")

        # ALTER TABLE ... ADD COLUMN while the others read SELECT *: first
        # by client 0 through the proxy, then behind the proxy's back.
        wid = c % 5 + 1
        alter_phase(c, conn, "extra int NOT NULL DEFAULT 7", False, (wid, f"w{wid}"), (wid, f"w{wid}", 7))
        alter_phase(c, conn, "extra2 int NOT NULL DEFAULT 8", True, (wid, f"w{wid}", 7), (wid, f"w{wid}", 7, 8))

        with conn.cursor() as cur:
            data = "".join(f"{c}\t{n}\tc{c} n{n}\n" for n in range(1, COPY_ROWS + 1))
            cur.copy_expert("COPY copied (client, n, txt) FROM STDIN", io.StringIO(data))
            conn.commit()
            out = io.StringIO()
            cur.copy_expert(f"COPY (SELECT n, txt FROM copied WHERE client = {c} ORDER BY n) TO STDOUT", out)
            conn.commit()
        expect(c, "COPY out", out.getvalue(), "".join(f"{n}\tc{c} n{n}\n" for n in range(1, COPY_ROWS + 1)))

        if c % 3 == 0:
            rows = all_rows(conn, "SELECT g FROM generate_series(1, %s) g", (BIG,))
            conn.commit()
            expect(c, "big result count", len(rows), BIG)
            expect(c, "big result sum", sum(r[0] for r in rows), BIG * (BIG + 1) // 2)

        check_settings(c, conn, t_ms, "at end")
    finally:
        conn.close()


def timeout_in_force():
    """A short statement_timeout given at startup still cancels after a
    rollback and RESET ALL."""
    conn = connect(2001)
    try:
        one(conn, "SELECT 1")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("RESET ALL")
        conn.commit()
        check_settings(-1, conn, 2001, "short timeout after RESET ALL")
        start = time.monotonic()
        try:
            one(conn, "SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep(20) was not cancelled by statement_timeout=2001ms")
        except errors.QueryCanceled:
            pass
        conn.rollback()
        took = time.monotonic() - start
        if took > 15:
            raise AssertionError(f"statement_timeout=2001ms cancelled pg_sleep only after {took:.1f}s")
    finally:
        conn.close()


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
        failures.sort(key=lambda f: "BrokenBarrierError" in f)
        for i, f in enumerate(failures):
            print(f if i < 3 else brief(f), file=sys.stderr)
        print(f"FAIL psycopg2 {psycopg2.__version__}: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print(f"OK psycopg2 {psycopg2.__version__}: {CLIENTS} clients, slowest cancel {stats['slowest_cancel']:.1f}s, "
          f"{time.monotonic() - start:.1f}s")


main()
