// node-postgres (pg) workload for internal/drivers (see doc.go there).
//
// One pg.Client per concurrent client, every query a named query
// ({name, text, values}): pg parses each name once per connection and
// then sends only Bind/Describe/Execute. COPY through pg-copy-streams.
// Exits 1 with the failing client and check on the first wrong answer.
'use strict'

const { Client, Query } = require('pg')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')
const { pipeline } = require('stream/promises')
const { Readable } = require('stream')
const assert = require('assert')

const env = process.env
const SCHEMA = env.PP_SCHEMA
const CLIENTS = Number(env.PP_CLIENTS)
const SELECTS = 20, INSERT_TX = 4, ROWS_PER_TX = 3, COPY_ROWS = 500, BIG = 100000
const BARRIER_TIMEOUT_MS = 120000
const stats = { cachedPlanErrors: 0 }

function connect(timeoutMs) {
  const c = new Client({
    host: env.PP_HOST, port: Number(env.PP_PORT), user: env.PP_USER, password: env.PP_PASSWORD,
    database: env.PP_DB, options: `-c search_path=${SCHEMA} -c statement_timeout=${timeoutMs}`,
    connectionTimeoutMillis: 30000,
  })
  return c.connect().then(() => c)
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

async function checkSettings(c, client, timeoutMs, when) {
  const r = await client.query({
    name: 'settings',
    text: "SELECT current_setting('statement_timeout') AS t, current_setting('search_path') AS p",
    rowMode: 'array',
  })
  expect(c, `settings ${when}`, r.rows, [[`${timeoutMs}ms`, SCHEMA]])
}

const sel = (c, k) => ({ name: 'sel', text: 'SELECT $1::int * 1000 + $2::int, $3::text', values: [c, k, `c${c}`], rowMode: 'array' })

async function selectStar(client, wid, name) {
  const r = await client.query({ name, text: 'SELECT * FROM wide WHERE id = $1', values: [wid], rowMode: 'array' })
  return r.rows
}

// alterPhase: every client runs its named SELECT * (before), client 0
// adds column (through its own connection, or directly on PostgreSQL),
// then every client must read after. pg keeps a name it parsed for the
// connection's life, so once PostgreSQL says 0A000 "cached plan must not
// change result type" that name fails for good: the application's retry
// prepares it under a new name (star.name), once per phase.
async function alterPhase(c, client, barrier, star, column, direct, before, after) {
  const wid = (c % 5) + 1
  for (let i = 0; i < 2; i++) {
    expect(c, `SELECT * before adding ${column}`, await selectStar(client, wid, star.name), before)
  }
  await barrier.wait()
  if (c === 0) {
    const alter = `ALTER TABLE wide ADD COLUMN ${column}`
    if (direct) {
      const d = new Client({
        host: env.PP_DIRECT_HOST, port: Number(env.PP_DIRECT_PORT), user: env.PP_USER, password: env.PP_PASSWORD,
        database: env.PP_DB, options: `-c search_path=${SCHEMA}`,
      })
      await d.connect()
      try {
        await d.query(alter)
      } finally {
        await d.end()
      }
    } else {
      await client.query(alter)
    }
  }
  await barrier.wait()
  let tolerated = false
  for (let i = 0; i < 3; i++) {
    let rows
    try {
      rows = await selectStar(client, wid, star.name)
    } catch (e) {
      if (e.code !== '0A000' || tolerated) throw e
      tolerated = true
      stats.cachedPlanErrors++
      star.name = `star_${++star.renames}`
      rows = await selectStar(client, wid, star.name)
    }
    expect(c, `SELECT * after adding ${column} (${i})`, rows, after)
  }
}

async function runClient(c, barrier) {
  const tMs = 50001 + c
  const client = await connect(tMs)
  try {
    await checkSettings(c, client, tMs, 'at start')

    for (let k = 0; k < SELECTS; k++) {
      expect(c, 'prepared select', (await client.query(sel(c, k))).rows, [[c * 1000 + k, `c${c}`]])
    }

    let seq = 0
    for (let tx = 0; tx < INSERT_TX; tx++) {
      await client.query('BEGIN')
      for (let r = 0; r < ROWS_PER_TX; r++) {
        seq++
        await client.query({ name: 'ins', text: 'INSERT INTO items (client, seq, val) VALUES ($1, $2, $3)', values: [c, seq, `c${c}-s${seq}`] })
      }
      await client.query('COMMIT')
    }
    const own = await client.query({ name: 'own', text: 'SELECT seq, val FROM items WHERE client = $1 ORDER BY seq', values: [c], rowMode: 'array' })
    expect(c, 'own rows', own.rows, Array.from({ length: seq }, (_, i) => [i + 1, `c${c}-s${i + 1}`]))

    for (let attempt = 0; attempt < 2; attempt++) {
      await client.query('BEGIN')
      await client.query({ name: 'ins', text: 'INSERT INTO items (client, seq, val) VALUES ($1, $2, $3)', values: [c, -1 - attempt, 'rolled back'] })
      let code = null
      try {
        await client.query({ name: 'div', text: 'SELECT 1 / ($1::int - $1::int)', values: [c] })
      } catch (e) {
        code = e.code
      }
      expect(c, 'division by zero', code, '22012')
      await client.query('ROLLBACK')
      const n = await client.query({ name: 'neg', text: 'SELECT count(*)::int FROM items WHERE client = $1 AND seq < 0', values: [c], rowMode: 'array' })
      expect(c, 'rolled-back rows', n.rows, [[0]])
      expect(c, 'prepared select after rollback', (await client.query(sel(c, 99))).rows, [[c * 1000 + 99, `c${c}`]])
      await checkSettings(c, client, tMs, 'after rollback')
    }

    // A statement cancelled after a second (pg's Client#cancel sends a
    // CancelRequest on a connection of its own), most of them while
    // waiting for one of the 3 server connections: only that statement
    // ends.
    {
      const start = Date.now()
      const q = new Query('SELECT pg_sleep(20)')
      const done = new Promise((resolve, reject) => {
        q.on('end', resolve)
        q.on('error', reject)
      })
      client.query(q)
      const timer = setTimeout(() => new Client({ host: env.PP_HOST, port: Number(env.PP_PORT) }).cancel(client, q), 1000)
      let code = null
      try {
        await done
      } catch (e) {
        code = e.code
      } finally {
        clearTimeout(timer)
      }
      expect(c, 'pg_sleep(20) cancelled', code, '57014')
      const took = (Date.now() - start) / 1000
      if (took > 15) throw new Error(`client ${c}: the cancel ended pg_sleep(20) only after ${took}s`)
      expect(c, 'prepared select after a cancel', (await client.query(sel(c, 98))).rows, [[c * 1000 + 98, `c${c}`]])
      await checkSettings(c, client, tMs, 'after a cancel')
    }

    await client.query('BEGIN')
    await client.query("SET LOCAL statement_timeout = '1234ms'")
    const local = await client.query({ name: 'timeout', text: "SELECT current_setting('statement_timeout')", rowMode: 'array' })
    expect(c, 'SET LOCAL', local.rows, [['1234ms']])
    await client.query('COMMIT')
    await checkSettings(c, client, tMs, 'after SET LOCAL')
    await client.query('RESET ALL')
    await checkSettings(c, client, tMs, 'after RESET ALL')

    // ALTER TABLE ... ADD COLUMN while every client has SELECT * parsed:
    // first by client 0 through the proxy, then behind the proxy's back.
    const wid = (c % 5) + 1
    const star = { name: 'star', renames: 0 }
    await alterPhase(c, client, barrier, star, 'extra int NOT NULL DEFAULT 7', false, [[wid, `w${wid}`]], [[wid, `w${wid}`, 7]])
    await alterPhase(c, client, barrier, star, 'extra2 int NOT NULL DEFAULT 8', true, [[wid, `w${wid}`, 7]], [[wid, `w${wid}`, 7, 8]])

    let data = ''
    for (let n = 1; n <= COPY_ROWS; n++) data += `${c}\t${n}\tc${c} n${n}\n`
    await pipeline(Readable.from([data]), client.query(copyFrom('COPY copied (client, n, txt) FROM STDIN')))
    const chunks = []
    const out = client.query(copyTo(`COPY (SELECT n, txt FROM copied WHERE client = ${c} ORDER BY n) TO STDOUT`))
    for await (const chunk of out) chunks.push(chunk)
    let want = ''
    for (let n = 1; n <= COPY_ROWS; n++) want += `${n}\tc${c} n${n}\n`
    expect(c, 'COPY out', Buffer.concat(chunks).toString(), want)

    if (c % 3 === 0) {
      const big = await client.query({ name: 'big', text: 'SELECT g FROM generate_series(1, $1::int) g', values: [BIG], rowMode: 'array' })
      expect(c, 'big result count', big.rows.length, BIG)
      expect(c, 'big result sum', big.rows.reduce((s, r) => s + r[0], 0), (BIG * (BIG + 1)) / 2)
    }

    await checkSettings(c, client, tMs, 'at end')
  } finally {
    await client.end()
  }
}

// A short statement_timeout given at startup still cancels after a
// rollback and RESET ALL.
async function timeoutInForce() {
  const client = await connect(2001)
  try {
    await client.query('BEGIN')
    await client.query('ROLLBACK')
    await client.query('RESET ALL')
    await checkSettings('short-timeout', client, 2001, 'after RESET ALL')
    const start = Date.now()
    let code = null
    try {
      await client.query({ name: 'sleep', text: 'SELECT pg_sleep($1::float8)', values: [20] })
    } catch (e) {
      code = e.code
    }
    expect('short-timeout', 'pg_sleep(20) under statement_timeout=2001ms', code, '57014')
    const took = (Date.now() - start) / 1000
    if (took > 15) throw new Error(`statement_timeout=2001ms cancelled pg_sleep only after ${took}s`)
  } finally {
    await client.end()
  }
}

async function main() {
  const version = require('pg/package.json').version
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
    console.error(`FAIL pg ${version}: ${failures.length} failure(s)`)
    process.exit(1)
  }
  console.log(`OK pg ${version}: ${CLIENTS} clients, cached_plan_errors=${stats.cachedPlanErrors}, ${((Date.now() - start) / 1000).toFixed(1)}s`)
}

main().catch((e) => { console.error(e); process.exit(1) })
