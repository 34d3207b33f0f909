// postgres.js (the `postgres` npm package) workload for internal/drivers
// (see doc.go there).
//
// One postgres() instance of one connection per concurrent client, with
// postgres.js' defaults: every tagged-template query is a named prepared
// statement kept for the connection's life, its row description cached.
// Startup parameters through `connection`. Exits 1 with the failing client
// and check on the first wrong answer.
'use strict'

const postgres = require('postgres')
const { pipeline } = require('stream/promises')
const { Readable } = require('stream')
const assert = require('assert')
const fs = require('fs')
const path = require('path')

const env = process.env
const SCHEMA = env.PP_SCHEMA
const CLIENTS = Number(env.PP_CLIENTS)
const SELECTS = 20, INSERT_TX = 4, ROWS_PER_TX = 3, COPY_ROWS = 500, BIG = 100000
const BARRIER_TIMEOUT_MS = 120000
const stats = { cachedPlanErrors: 0 }

function connect(timeoutMs) {
  return postgres({
    host: env.PP_HOST, port: Number(env.PP_PORT), user: env.PP_USER, password: env.PP_PASSWORD,
    database: env.PP_DB, max: 1, connect_timeout: 30, onnotice: () => {},
    connection: { search_path: SCHEMA, statement_timeout: timeoutMs },
  })
}

function expect(c, what, got, want) {
  try {
    assert.deepStrictEqual(got, want)
  } catch (e) {
    throw new Error(`client ${c}: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
  }
}

// A barrier for all clients; broken for everyone when one client fails.
class Barrier {
  constructor(n) { this.n = n; this.count = 0; this.waiters = []; this.broken = null }
  wait() {
    if (this.broken) return Promise.reject(this.broken)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.abort(new Error('barrier timed out')), BARRIER_TIMEOUT_MS)
      this.waiters.push({ resolve: () => { clearTimeout(timer); resolve() }, reject: (e) => { clearTimeout(timer); reject(e) } })
      if (++this.count === this.n) {
        const ws = this.waiters
        this.waiters = []
        this.count = 0
        ws.forEach((w) => w.resolve())
      }
    })
  }
  abort(err) {
    this.broken = this.broken || err || new Error('barrier broken')
    const ws = this.waiters
    this.waiters = []
    ws.forEach((w) => w.reject(this.broken))
  }
}

async function checkSettings(c, sql, timeoutMs, when) {
  const rows = await sql`SELECT current_setting('statement_timeout'), current_setting('search_path')`.values()
  expect(c, `settings ${when}`, rows.map((r) => [...r]), [[`${timeoutMs}ms`, SCHEMA]])
}

const arrays = (rows) => rows.map((r) => [...r])

// alterPhase: every client runs its prepared SELECT * (before), client 0
// adds column (through its own connection, or directly on PostgreSQL),
// then every client must read after. postgres.js re-prepares by itself on
// 0A000 "cached plan must not change result type" outside a transaction;
// should the error still reach us, once per connection is allowed.
async function alterPhase(c, sql, barrier, column, direct, before, after) {
  const wid = (c % 5) + 1
  const star = () => sql`SELECT * FROM wide WHERE id = ${wid}`.values()
  for (let i = 0; i < 2; i++) {
    expect(c, `SELECT * before adding ${column}`, arrays(await star()), before)
  }
  await barrier.wait()
  if (c === 0) {
    if (direct) {
      const d = postgres({
        host: env.PP_DIRECT_HOST, port: Number(env.PP_DIRECT_PORT), user: env.PP_USER, password: env.PP_PASSWORD,
        database: env.PP_DB, max: 1, onnotice: () => {}, connection: { search_path: SCHEMA },
      })
      try {
        await d.unsafe(`ALTER TABLE wide ADD COLUMN ${column}`)
      } finally {
        await d.end({ timeout: 5 })
      }
    } else {
      await sql.unsafe(`ALTER TABLE wide ADD COLUMN ${column}`)
    }
  }
  await barrier.wait()
  let tolerated = false
  for (let i = 0; i < 3; i++) {
    let rows
    try {
      rows = await star()
    } catch (e) {
      if (e.code !== '0A000' || tolerated) throw e
      tolerated = true
      stats.cachedPlanErrors++
      rows = await star()
    }
    expect(c, `SELECT * after adding ${column} (${i})`, arrays(rows), after)
  }
}

async function runClient(c, barrier) {
  const tMs = 50001 + c
  const sql = connect(tMs)
  try {
    await checkSettings(c, sql, tMs, 'at start')

    for (let k = 0; k < SELECTS; k++) {
      const rows = await sql`SELECT ${c}::int * 1000 + ${k}::int, ${'c' + c}::text`.values()
      expect(c, 'prepared select', arrays(rows), [[c * 1000 + k, `c${c}`]])
    }

    let seq = 0
    for (let tx = 0; tx < INSERT_TX; tx++) {
      await sql.begin(async (sql) => {
        for (let r = 0; r < ROWS_PER_TX; r++) {
          seq++
          await sql`INSERT INTO items (client, seq, val) VALUES (${c}, ${seq}, ${`c${c}-s${seq}`})`
        }
      })
    }
    const own = await sql`SELECT seq, val FROM items WHERE client = ${c} ORDER BY seq`.values()
    expect(c, 'own rows', arrays(own), Array.from({ length: seq }, (_, i) => [i + 1, `c${c}-s${i + 1}`]))

    for (let attempt = 0; attempt < 2; attempt++) {
      let code = null
      try {
        await sql.begin(async (sql) => {
          await sql`INSERT INTO items (client, seq, val) VALUES (${c}, ${-1 - attempt}, 'rolled back')`
          await sql`SELECT 1 / (${c}::int - ${c}::int)`
        })
      } catch (e) {
        code = e.code
      }
      expect(c, 'division by zero', code, '22012')
      const n = await sql`SELECT count(*)::int FROM items WHERE client = ${c} AND seq < 0`.values()
      expect(c, 'rolled-back rows', arrays(n), [[0]])
      const row = await sql`SELECT ${c}::int * 1000 + ${99}::int, ${'c' + c}::text`.values()
      expect(c, 'prepared select after rollback', arrays(row), [[c * 1000 + 99, `c${c}`]])
      await checkSettings(c, sql, tMs, 'after rollback')
    }

    // A statement cancelled by the application (query.cancel() sends a
    // CancelRequest), most of them while waiting for one of the 3 server
    // connections: only that statement ends.
    {
      const start = Date.now()
      const q = sql`SELECT pg_sleep(20)`
      const timer = setTimeout(() => q.cancel(), 1000)
      let code = null
      try {
        await q
      } catch (e) {
        code = e.code
      } finally {
        clearTimeout(timer)
      }
      expect(c, 'pg_sleep(20) cancelled', code, '57014')
      const took = (Date.now() - start) / 1000
      if (took > 15) throw new Error(`client ${c}: the cancel ended pg_sleep(20) only after ${took}s`)
      const row = await sql`SELECT ${c}::int * 1000 + ${98}::int, ${'c' + c}::text`.values()
      expect(c, 'prepared select after a cancel', arrays(row), [[c * 1000 + 98, `c${c}`]])
      await checkSettings(c, sql, tMs, 'after a cancel')
    }

    await sql.begin(async (sql) => {
      await sql`SET LOCAL statement_timeout = '1234ms'`
      const v = await sql`SELECT current_setting('statement_timeout')`.values()
      expect(c, 'SET LOCAL', arrays(v), [['1234ms']])
    })
    await checkSettings(c, sql, tMs, 'after SET LOCAL')
    await sql`RESET ALL`
    await checkSettings(c, sql, tMs, 'after RESET ALL')

    // ALTER TABLE ... ADD COLUMN while every client has SELECT * prepared:
    // first by client 0 through the proxy, then behind the proxy's back.
    const wid = (c % 5) + 1
    await alterPhase(c, sql, barrier, 'extra int NOT NULL DEFAULT 7', false, [[wid, `w${wid}`]], [[wid, `w${wid}`, 7]])
    await alterPhase(c, sql, barrier, 'extra2 int NOT NULL DEFAULT 8', true, [[wid, `w${wid}`, 7]], [[wid, `w${wid}`, 7, 8]])

    let data = ''
    for (let n = 1; n <= COPY_ROWS; n++) data += `${c}\t${n}\tc${c} n${n}\n`
    await pipeline(Readable.from([data]), await sql`COPY copied (client, n, txt) FROM STDIN`.writable())
    const chunks = []
    const out = await sql`COPY (SELECT n, txt FROM copied WHERE client = ${sql.unsafe(String(c))} ORDER BY n) TO STDOUT`.readable()
    for await (const chunk of out) chunks.push(chunk)
    let want = ''
    for (let n = 1; n <= COPY_ROWS; n++) want += `${n}\tc${c} n${n}\n`
    expect(c, 'COPY out', Buffer.concat(chunks).toString(), want)

    if (c % 3 === 0) {
      const big = await sql`SELECT g FROM generate_series(1, ${BIG}::int) g`.values()
      expect(c, 'big result count', big.length, BIG)
      expect(c, 'big result sum', big.reduce((s, r) => s + r[0], 0), (BIG * (BIG + 1)) / 2)
    }

    await checkSettings(c, sql, tMs, 'at end')
  } finally {
    await sql.end({ timeout: 5 })
  }
}

// A short statement_timeout given at startup still cancels after a
// rollback and RESET ALL.
async function timeoutInForce() {
  const sql = connect(2001)
  try {
    await sql.begin(async (sql) => { await sql`SELECT 1` })
    await sql`RESET ALL`
    await checkSettings('short-timeout', sql, 2001, 'after RESET ALL')
    const start = Date.now()
    let code = null
    try {
      await sql`SELECT pg_sleep(${20}::float8)`
    } catch (e) {
      code = e.code
    }
    expect('short-timeout', 'pg_sleep(20) under statement_timeout=2001ms', code, '57014')
    const took = (Date.now() - start) / 1000
    if (took > 15) throw new Error(`statement_timeout=2001ms cancelled pg_sleep only after ${took}s`)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

// packageVersion reads name's version from NODE_PATH (postgres.js does
// not export its package.json).
function packageVersion(name) {
  for (const dir of (env.NODE_PATH || '').split(path.delimiter)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, name, 'package.json'))).version
    } catch (e) {}
  }
  return 'unknown'
}

async function main() {
  const version = packageVersion('postgres')
  const start = Date.now()
  const barrier = new Barrier(CLIENTS)
  const failures = []
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => runClient(c, barrier).catch((e) => {
    failures.push(`client ${c} failed: ${e.stack || e}` + (e.code ? ` (SQLSTATE ${e.code})` : ''))
    barrier.abort(new Error(`barrier broken by client ${c}`))
  })))
  if (failures.length === 0) {
    await timeoutInForce().catch((e) => failures.push(`timeout check failed: ${e.stack || e}`))
  }
  if (failures.length > 0) {
    failures.sort((a, b) => a.includes('barrier broken') - b.includes('barrier broken'))
    // The first few in full, then the first line of each (client and error).
    failures.forEach((f, i) => console.error(i < 3 ? f : f.split('\n')[0]))
    console.error(`FAIL postgres.js ${version}: ${failures.length} failure(s)`)
    process.exit(1)
  }
  console.log(`OK postgres.js ${version}: ${CLIENTS} clients, cached_plan_errors=${stats.cachedPlanErrors}, ${((Date.now() - start) / 1000).toFixed(1)}s`)
}

main().catch((e) => { console.error(e); process.exit(1) })
