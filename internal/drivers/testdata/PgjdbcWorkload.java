// pgjdbc workload for internal/drivers (see doc.go there), compiled by the
// test with javac against Debian's /usr/share/java/postgresql.jar.
//
// One thread and one connection per client, prepareThreshold=1 (every
// PreparedStatement is a named server statement from its first use, kept
// in pgjdbc's statement cache across transactions), startup parameters in
// options=-c .... Exits 1 with the failing client and check on the first
// wrong answer.

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;

public class PgjdbcWorkload {
    static final String HOST = System.getenv("PP_HOST");
    static final int PORT = Integer.parseInt(System.getenv("PP_PORT"));
    static final String USER = System.getenv("PP_USER"), PASSWORD = System.getenv("PP_PASSWORD"), DB = System.getenv("PP_DB");
    static final String SCHEMA = System.getenv("PP_SCHEMA");
    // PostgreSQL itself, for the ALTER made behind the proxy's back.
    static final String DIRECT_HOST = System.getenv("PP_DIRECT_HOST");
    static final int DIRECT_PORT = Integer.parseInt(System.getenv("PP_DIRECT_PORT"));
    static final int CLIENTS = Integer.parseInt(System.getenv("PP_CLIENTS"));
    static final int SELECTS = 20, INSERT_TX = 4, ROWS_PER_TX = 3, COPY_ROWS = 500, BIG = 100_000;
    static final Barrier barrier = new Barrier(CLIENTS);
    static final AtomicInteger cachedPlanErrors = new AtomicInteger();

    // Barrier is a reusable barrier for all clients that, unlike
    // CyclicBarrier.reset, stays broken once a client fails, so no client
    // arriving later waits for the ones that are gone.
    static final class Barrier {
        private final int parties;
        private int waiting, generation;
        private boolean broken;

        Barrier(int parties) {
            this.parties = parties;
        }

        synchronized void await() throws BrokenBarrierException, InterruptedException, TimeoutException {
            if (broken) {
                throw new BrokenBarrierException();
            }
            int gen = generation;
            if (++waiting == parties) {
                waiting = 0;
                generation++;
                notifyAll();
                return;
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (gen == generation) {
                if (broken) {
                    throw new BrokenBarrierException();
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    abort();
                    throw new TimeoutException("barrier: the other clients did not arrive in 120s");
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
        }

        synchronized void abort() {
            broken = true;
            notifyAll();
        }
    }

    static Connection connect(int timeoutMs) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", USER);
        p.setProperty("password", PASSWORD);
        p.setProperty("prepareThreshold", "1");
        p.setProperty("options", "-c search_path=" + SCHEMA + " -c statement_timeout=" + timeoutMs);
        p.setProperty("connectTimeout", "30");
        p.setProperty("sslmode", "disable");
        return DriverManager.getConnection("jdbc:postgresql://" + HOST + ":" + PORT + "/" + DB, p);
    }

    static void expect(Object c, String what, Object got, Object want) {
        if (!Objects.equals(got, want)) {
            throw new AssertionError("client " + c + ": " + what + ": got " + got + ", want " + want);
        }
    }

    static List<List<Object>> query(Connection conn, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            List<List<Object>> rows = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    List<Object> row = new ArrayList<>();
                    for (int i = 1; i <= n; i++) {
                        row.add(rs.getObject(i));
                    }
                    rows.add(row);
                }
            }
            return rows;
        }
    }

    static void exec(Connection conn, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            ps.execute();
        }
    }

    static List<List<Object>> rows(Object[]... rows) {
        List<List<Object>> out = new ArrayList<>();
        for (Object[] r : rows) {
            out.add(List.of(r));
        }
        return out;
    }

    static void checkSettings(Object c, Connection conn, int timeoutMs, String when) throws SQLException {
        expect(c, "settings " + when,
                query(conn, "SELECT current_setting('statement_timeout'), current_setting('search_path')"),
                rows(new Object[] {timeoutMs + "ms", SCHEMA}));
    }

    static String sqlState(Throwable e) {
        return e instanceof SQLException ? ((SQLException) e).getSQLState() : null;
    }

    // alterPhase: every client runs its prepared SELECT * (before), client 0
    // adds column (through its own connection, or directly on PostgreSQL),
    // then every client must read after, allowed one 0A000 "cached plan
    // must not change result type" and its retry.
    static void alterPhase(int c, Connection conn, String column, boolean direct,
            List<List<Object>> before, List<List<Object>> after) throws Exception {
        int wid = c % 5 + 1;
        for (int i = 0; i < 2; i++) {
            expect(c, "SELECT * before adding " + column, query(conn, "SELECT * FROM wide WHERE id = ?", wid), before);
        }
        barrier.await();
        if (c == 0) {
            String alter = "ALTER TABLE wide ADD COLUMN " + column;
            if (direct) {
                Properties p = new Properties();
                p.setProperty("user", USER);
                p.setProperty("password", PASSWORD);
                p.setProperty("options", "-c search_path=" + SCHEMA);
                p.setProperty("sslmode", "disable");
                try (Connection d = DriverManager.getConnection("jdbc:postgresql://" + DIRECT_HOST + ":" + DIRECT_PORT + "/" + DB, p);
                        Statement st = d.createStatement()) {
                    st.execute(alter);
                }
            } else {
                exec(conn, alter);
            }
        }
        barrier.await();
        boolean tolerated = false;
        for (int i = 0; i < 3; i++) {
            List<List<Object>> got;
            try {
                got = query(conn, "SELECT * FROM wide WHERE id = ?", wid);
            } catch (SQLException e) {
                if (!"0A000".equals(e.getSQLState()) || tolerated) {
                    throw e;
                }
                tolerated = true;
                cachedPlanErrors.incrementAndGet();
                got = query(conn, "SELECT * FROM wide WHERE id = ?", wid);
            }
            expect(c, "SELECT * after adding " + column + " (" + i + ")", got, after);
        }
    }

    static void client(int c) throws Exception {
        int tMs = 50001 + c;
        try (Connection conn = connect(tMs)) {
            checkSettings(c, conn, tMs, "at start");

            for (int k = 0; k < SELECTS; k++) {
                expect(c, "prepared select", query(conn, "SELECT ?::int * 1000 + ?::int, ?::text", c, k, "c" + c),
                        rows(new Object[] {c * 1000 + k, "c" + c}));
            }

            int seq = 0;
            conn.setAutoCommit(false);
            for (int tx = 0; tx < INSERT_TX; tx++) {
                for (int r = 0; r < ROWS_PER_TX; r++) {
                    seq++;
                    exec(conn, "INSERT INTO items (client, seq, val) VALUES (?, ?, ?)", c, seq, "c" + c + "-s" + seq);
                }
                conn.commit();
            }
            conn.setAutoCommit(true);
            List<List<Object>> want = new ArrayList<>();
            for (int s = 1; s <= seq; s++) {
                want.add(List.of(s, "c" + c + "-s" + s));
            }
            expect(c, "own rows", query(conn, "SELECT seq, val FROM items WHERE client = ? ORDER BY seq", c), want);

            for (int attempt = 0; attempt < 2; attempt++) {
                conn.setAutoCommit(false);
                exec(conn, "INSERT INTO items (client, seq, val) VALUES (?, ?, 'rolled back')", c, -1 - attempt);
                String state = null;
                try {
                    query(conn, "SELECT 1 / (?::int - ?::int)", c, c);
                } catch (SQLException e) {
                    state = e.getSQLState();
                }
                expect(c, "division by zero", state, "22012");
                conn.rollback();
                conn.setAutoCommit(true);
                expect(c, "rolled-back rows", query(conn, "SELECT count(*)::int FROM items WHERE client = ? AND seq < 0", c),
                        rows(new Object[] {0}));
                expect(c, "prepared select after rollback", query(conn, "SELECT ?::int * 1000 + ?::int, ?::text", c, 99, "c" + c),
                        rows(new Object[] {c * 1000 + 99, "c" + c}));
                checkSettings(c, conn, tMs, "after rollback");
            }

            // A statement cancelled by pgjdbc's query timeout (a
            // CancelRequest from its timer thread), most of them while
            // waiting for one of the 3 server connections: only that
            // statement ends.
            long cancelStart = System.nanoTime();
            String cancelState = null;
            try (PreparedStatement ps = conn.prepareStatement("SELECT pg_sleep(20)")) {
                ps.setQueryTimeout(1);
                ps.executeQuery().close();
            } catch (SQLException e) {
                cancelState = e.getSQLState();
            }
            expect(c, "pg_sleep(20) cancelled", cancelState, "57014");
            double cancelTook = (System.nanoTime() - cancelStart) / 1e9;
            if (cancelTook > 15) {
                throw new AssertionError("client " + c + ": the cancel ended pg_sleep(20) only after " + cancelTook + "s");
            }
            expect(c, "prepared select after a cancel", query(conn, "SELECT ?::int * 1000 + ?::int, ?::text", c, 98, "c" + c),
                    rows(new Object[] {c * 1000 + 98, "c" + c}));
            checkSettings(c, conn, tMs, "after a cancel");

            // setReadOnly(true) makes pgjdbc send BEGIN READ ONLY; a write
            // in it fails with 25006, which is not a demoted primary.
            conn.setAutoCommit(false);
            conn.setReadOnly(true);
            expect(c, "read-only select", query(conn, "SELECT count(*)::int FROM items WHERE client = ?", c), rows(new Object[] {seq}));
            String roState = null;
            try {
                exec(conn, "INSERT INTO items (client, seq, val) VALUES (?, ?, 'read only')", c, -9);
            } catch (SQLException e) {
                roState = e.getSQLState();
            }
            expect(c, "write in a read-only transaction", roState, "25006");
            conn.rollback();
            conn.setReadOnly(false);

            exec(conn, "SET LOCAL statement_timeout = '1234ms'");
            expect(c, "SET LOCAL", query(conn, "SELECT current_setting('statement_timeout')"), rows(new Object[] {"1234ms"}));
            conn.commit();
            conn.setAutoCommit(true);
            checkSettings(c, conn, tMs, "after SET LOCAL");
            try (Statement st = conn.createStatement()) {
                st.execute("RESET ALL");
            }
            checkSettings(c, conn, tMs, "after RESET ALL");

            // ALTER TABLE ... ADD COLUMN while every client has SELECT *
            // prepared: first by client 0 through the proxy, then behind the
            // proxy's back.
            int wid = c % 5 + 1;
            alterPhase(c, conn, "extra int NOT NULL DEFAULT 7", false,
                    rows(new Object[] {wid, "w" + wid}), rows(new Object[] {wid, "w" + wid, 7}));
            alterPhase(c, conn, "extra2 int NOT NULL DEFAULT 8", true,
                    rows(new Object[] {wid, "w" + wid, 7}), rows(new Object[] {wid, "w" + wid, 7, 8}));

            CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            StringBuilder wantOut = new StringBuilder();
            for (int n = 1; n <= COPY_ROWS; n++) {
                data.append(c).append('\t').append(n).append("\tc").append(c).append(" n").append(n).append('\n');
                wantOut.append(n).append("\tc").append(c).append(" n").append(n).append('\n');
            }
            expect(c, "COPY in count", copy.copyIn("COPY copied (client, n, txt) FROM STDIN", new StringReader(data.toString())), (long) COPY_ROWS);
            StringWriter out = new StringWriter();
            copy.copyOut("COPY (SELECT n, txt FROM copied WHERE client = " + c + " ORDER BY n) TO STDOUT", out);
            expect(c, "COPY out", out.toString(), wantOut.toString());

            if (c % 3 == 0) {
                long count = 0, sum = 0;
                try (PreparedStatement ps = conn.prepareStatement("SELECT g FROM generate_series(1, ?::int) g")) {
                    ps.setInt(1, BIG);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            count++;
                            sum += rs.getInt(1);
                        }
                    }
                }
                expect(c, "big result count", count, (long) BIG);
                expect(c, "big result sum", sum, (long) BIG * (BIG + 1) / 2);
            }

            checkSettings(c, conn, tMs, "at end");
        }
    }

    // A short statement_timeout given at startup still cancels after a
    // rollback and RESET ALL.
    static void timeoutInForce() throws Exception {
        try (Connection conn = connect(2001)) {
            conn.setAutoCommit(false);
            query(conn, "SELECT 1");
            conn.rollback();
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement()) {
                st.execute("RESET ALL");
            }
            checkSettings("short-timeout", conn, 2001, "after RESET ALL");
            long start = System.nanoTime();
            String state = null;
            try {
                query(conn, "SELECT pg_sleep(?::float8)", 20);
            } catch (SQLException e) {
                state = e.getSQLState();
            }
            expect("short-timeout", "pg_sleep(20) under statement_timeout=2001ms", state, "57014");
            double took = (System.nanoTime() - start) / 1e9;
            if (took > 15) {
                throw new AssertionError("statement_timeout=2001ms cancelled pg_sleep only after " + took + "s");
            }
        }
    }

    public static void main(String[] args) throws Exception {
        long start = System.nanoTime();
        List<String> failures = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>();
        for (int c = 0; c < CLIENTS; c++) {
            final int client = c;
            Thread t = new Thread(() -> {
                try {
                    client(client);
                } catch (Throwable e) {
                    StringWriter sw = new StringWriter();
                    e.printStackTrace(new java.io.PrintWriter(sw));
                    String state = sqlState(e);
                    failures.add("client " + client + " failed" + (state != null ? " (SQLSTATE " + state + ")" : "") + ": " + sw);
                    barrier.abort(); // the others get BrokenBarrierException
                }
            }, "client-" + c);
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join();
        }
        if (failures.isEmpty()) {
            try {
                timeoutInForce();
            } catch (Throwable e) {
                failures.add("timeout check failed: " + e);
            }
        }
        String version = org.postgresql.util.DriverInfo.DRIVER_VERSION;
        if (!failures.isEmpty()) {
            List<String> sorted = new ArrayList<>(failures);
            sorted.sort((a, b) -> Boolean.compare(a.contains("BrokenBarrierException"), b.contains("BrokenBarrierException")));
            // The first few in full, then the first line of each (client and error).
            for (int i = 0; i < sorted.size(); i++) {
                System.err.println(i < 3 ? sorted.get(i) : sorted.get(i).split("\n", 2)[0]);
            }
            System.err.println("FAIL pgjdbc " + version + ": " + failures.size() + " failure(s)");
            System.exit(1);
        }
        System.out.printf("OK pgjdbc %s: %d clients, cached_plan_errors=%d, %.1fs%n", version, CLIENTS, cachedPlanErrors.get(), (System.nanoTime() - start) / 1e9);
    }
}
