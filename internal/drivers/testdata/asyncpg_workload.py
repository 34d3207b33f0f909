"""asyncpg workload for internal/drivers (see doc.go there).

asyncio tasks, one connection each, with asyncpg's default statement
cache: every query is a named prepared statement (__asyncpg_stmt_N__)
reused across transactions. Then an asyncpg Pool whose connections carry
search_path and statement_timeout in server_settings: each release sends
RESET ALL, and each acquire checks the settings are still the startup
ones, and that a short statement_timeout still cancels. Exits 1 with the
failing client and check on the first wrong answer.
"""

import asyncio
import io
import os
import sys
import time
import traceback

import asyncpg

HOST, PORT = os.environ["PP_HOST"], int(os.environ["PP_PORT"])
USER, PASSWORD, DB = os.environ["PP_USER"], os.environ["PP_PASSWORD"], os.environ["PP_DB"]
SCHEMA, CLIENTS = os.environ["PP_SCHEMA"], int(os.environ["PP_CLIENTS"])
# PostgreSQL itself, for the ALTER made behind the proxy's back.
DIRECT_HOST, DIRECT_PORT = os.environ["PP_DIRECT_HOST"], int(os.environ["PP_DIRECT_PORT"])

SELECTS, INSERT_TX, ROWS_PER_TX, COPY_ROWS, BIG = 20, 4, 3, 500, 100_000
POOL_CYCLES = 5
BARRIER_TIMEOUT = 120
stats = {"cached_plan_errors": 0, "slowest_cancel": 0.0}


def settings(timeout_ms):
    return {"search_path": SCHEMA, "statement_timeout": str(timeout_ms)}


async def connect(timeout_ms):
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                                 server_settings=settings(timeout_ms), timeout=30)


def expect(c, what, got, want):
    if got != want:
        raise AssertionError(f"client {c}: {what}: got {got!r}, want {want!r}")


async def check_settings(c, conn, timeout_ms, when):
    row = await conn.fetchrow("SELECT current_setting('statement_timeout'), current_setting('search_path')")
    expect(c, f"settings {when}", tuple(row), (f"{timeout_ms}ms", SCHEMA))


async def alter_phase(c, conn, barrier, column, direct, before, after):
    """Every client runs its cached SELECT * (before), client 0 adds
    column (through its own connection, or directly on PostgreSQL), then
    every client must read after. asyncpg re-prepares by itself on 0A000
    "cached plan must not change result type" outside a transaction;
    should the error still reach us, once per connection is allowed."""
    wid = c % 5 + 1
    for _ in range(2):
        row = await conn.fetchrow("SELECT * FROM wide WHERE id = $1", wid)
        expect(c, f"SELECT * before adding {column}", tuple(row), before)
    await asyncio.wait_for(barrier.wait(), BARRIER_TIMEOUT)
    if c == 0:
        alter = f"ALTER TABLE wide ADD COLUMN {column}"
        if direct:
            d = await asyncpg.connect(host=DIRECT_HOST, port=DIRECT_PORT, user=USER, password=PASSWORD,
                                      database=DB, server_settings={"search_path": SCHEMA}, timeout=30)
            try:
                await d.execute(alter)
            finally:
                await d.close()
        else:
            await conn.execute(alter)
    await asyncio.wait_for(barrier.wait(), BARRIER_TIMEOUT)
    tolerated = False
    for i in range(3):
        try:
            row = await conn.fetchrow("SELECT * FROM wide WHERE id = $1", wid)
        except asyncpg.exceptions.InvalidCachedStatementError:
            if tolerated:
                raise
            tolerated = True
            stats["cached_plan_errors"] += 1
            row = await conn.fetchrow("SELECT * FROM wide WHERE id = $1", wid)
        expect(c, f"SELECT * after adding {column} ({i})", tuple(row), after)


async def client(c, barrier):
    t_ms = 50001 + c
    conn = await connect(t_ms)
    try:
        await check_settings(c, conn, t_ms, "at start")

        for k in range(SELECTS):
            row = await conn.fetchrow("SELECT $1::int * 1000 + $2::int, $3::text", c, k, f"c{c}")
            expect(c, "prepared select", tuple(row), (c * 1000 + k, f"c{c}"))

        seq = 0
        for _ in range(INSERT_TX):
            async with conn.transaction():
                for _ in range(ROWS_PER_TX):
                    seq += 1
                    await conn.execute("INSERT INTO items (client, seq, val) VALUES ($1, $2, $3)", c, seq, f"c{c}-s{seq}")
        rows = await conn.fetch("SELECT seq, val FROM items WHERE client = $1 ORDER BY seq", c)
        expect(c, "own rows", [tuple(r) for r in rows], [(s, f"c{c}-s{s}") for s in range(1, seq + 1)])

        for attempt in range(2):
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO items (client, seq, val) VALUES ($1, $2, 'rolled back')", c, -1 - attempt)
                    await conn.fetchval("SELECT 1 / ($1::int - $1::int)", c)
                raise AssertionError(f"client {c}: division by zero did not fail")
            except asyncpg.DivisionByZeroError:
                pass
            n = await conn.fetchval("SELECT count(*) FROM items WHERE client = $1 AND seq < 0", c)
            expect(c, "rolled-back rows", n, 0)
            row = await conn.fetchrow("SELECT $1::int * 1000 + $2::int, $3::text", c, 99, f"c{c}")
            expect(c, "prepared select after rollback", tuple(row), (c * 1000 + 99, f"c{c}"))
            await check_settings(c, conn, t_ms, "after rollback")

        # A statement cancelled by the driver on its own timeout (asyncpg
        # sends a CancelRequest), most of them while waiting for one of
        # the 3 server connections: only that statement ends.
        start = time.monotonic()
        try:
            await conn.fetchval("SELECT pg_sleep(20)", timeout=1)
            raise AssertionError(f"client {c}: pg_sleep(20) was not cancelled")
        except asyncio.TimeoutError:
            pass
        took = time.monotonic() - start
        if took > 15:
            raise AssertionError(f"client {c}: the cancel ended pg_sleep(20) only after {took:.1f}s")
        stats["slowest_cancel"] = max(stats["slowest_cancel"], took)
        row = await conn.fetchrow("SELECT $1::int * 1000 + $2::int, $3::text", c, 98, f"c{c}")
        expect(c, "prepared select after a cancel", tuple(row), (c * 1000 + 98, f"c{c}"))
        await check_settings(c, conn, t_ms, "after a cancel")

        async with conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = '1234ms'")
            expect(c, "SET LOCAL", await conn.fetchval("SELECT current_setting('statement_timeout')"), "1234ms")
        await check_settings(c, conn, t_ms, "after SET LOCAL")
        await conn.execute("RESET ALL")
        await check_settings(c, conn, t_ms, "after RESET ALL")

        # ALTER TABLE ... ADD COLUMN while every client has SELECT * cached:
        # first by client 0 through the proxy, then behind the proxy's back.
        wid = c % 5 + 1
        await alter_phase(c, conn, barrier, "extra int NOT NULL DEFAULT 7", False, (wid, f"w{wid}"), (wid, f"w{wid}", 7))
        await alter_phase(c, conn, barrier, "extra2 int NOT NULL DEFAULT 8", True, (wid, f"w{wid}", 7), (wid, f"w{wid}", 7, 8))

        await conn.copy_records_to_table("copied", columns=["client", "n", "txt"],
                                         records=[(c, n, f"c{c} n{n}") for n in range(1, COPY_ROWS + 1)])
        out = io.BytesIO()
        await conn.copy_from_query("SELECT n, txt FROM copied WHERE client = $1 ORDER BY n", c, output=out, format="text")
        expect(c, "COPY out", out.getvalue().decode(), "".join(f"{n}\tc{c} n{n}\n" for n in range(1, COPY_ROWS + 1)))

        if c % 3 == 0:
            rows = await conn.fetch("SELECT g FROM generate_series(1, $1::int) g", BIG)
            expect(c, "big result count", len(rows), BIG)
            expect(c, "big result sum", sum(r[0] for r in rows), BIG * (BIG + 1) // 2)

        await check_settings(c, conn, t_ms, "at end")
    finally:
        await conn.close()


async def pool_phase():
    """A Pool with server_settings: RESET ALL at every release must bring
    back the startup values, not the server's defaults."""
    t_ms = 42001
    pool = await asyncpg.create_pool(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                                     server_settings=settings(t_ms), min_size=2, max_size=10, timeout=30)
    try:
        async def worker(w):
            for cycle in range(POOL_CYCLES):
                async with pool.acquire() as conn:
                    await check_settings(f"pool worker {w}", conn, t_ms, f"after {cycle} acquire/release cycles")
                    row = await conn.fetchrow("SELECT $1::int * 1000 + $2::int, $3::text", w, cycle, f"w{w}")
                    expect(f"pool worker {w}", "prepared select", tuple(row), (w * 1000 + cycle, f"w{w}"))
                    if cycle == 1:
                        # A session SET, which the release's RESET ALL undoes.
                        await conn.execute("SET statement_timeout = '777ms'")
        await asyncio.gather(*(worker(w) for w in range(CLIENTS)))
    finally:
        await pool.close()

    # A short timeout given at startup still cancels after RESET ALL.
    pool = await asyncpg.create_pool(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                                     server_settings=settings(2001), min_size=1, max_size=1, timeout=30)
    try:
        for cycle in range(3):
            async with pool.acquire() as conn:
                await check_settings("short-timeout pool", conn, 2001, f"cycle {cycle}")
        async with pool.acquire() as conn:
            start = time.monotonic()
            try:
                await conn.execute("SELECT pg_sleep(20)")
                raise AssertionError("pg_sleep(20) was not cancelled by statement_timeout=2001ms")
            except asyncpg.QueryCanceledError:
                pass
            took = time.monotonic() - start
            if took > 15:
                raise AssertionError(f"statement_timeout=2001ms cancelled pg_sleep only after {took:.1f}s")
    finally:
        await pool.close()


def brief(failure):
    """The first and last lines of a failure: its client and its error
    (the first few failures are shown in full)."""
    lines = failure.strip().splitlines()
    return f"{lines[0]} {lines[-1]}" if len(lines) > 1 else failure


async def main():
    start = time.monotonic()
    barrier = asyncio.Barrier(CLIENTS)
    failures = []

    async def run(c):
        try:
            await client(c, barrier)
        except Exception:
            failures.append(f"client {c} failed:\n{traceback.format_exc()}")
            await barrier.abort()

    await asyncio.gather(*(run(c) for c in range(CLIENTS)))
    if not failures:
        try:
            await pool_phase()
        except Exception:
            failures.append(f"pool phase failed:\n{traceback.format_exc()}")
    if failures:
        failures.sort(key=lambda f: "BrokenBarrierError" in f)
        for i, f in enumerate(failures):
            print(f if i < 3 else brief(f), file=sys.stderr)
        print(f"FAIL asyncpg {asyncpg.__version__}: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print(f"OK asyncpg {asyncpg.__version__}: {CLIENTS} clients, pool of 10 for {CLIENTS} workers x {POOL_CYCLES} cycles, "
          f"cached_plan_errors={stats['cached_plan_errors']}, slowest cancel {stats['slowest_cancel']:.1f}s, "
          f"{time.monotonic() - start:.1f}s")


asyncio.run(main())
