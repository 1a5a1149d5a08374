import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import type { App } from '../src/app.js';
import { offsetClock, type Clock } from '../src/clock.js';
import { migrate } from '../src/db/migrate.js';
import { manifestPath, verifyArchive, type Manifest } from '../src/retention/archive.js';
import { PG_URL, testEnv, type TestEnv } from './helpers.js';

const HOUR = 3_600_000;
const thisHour = () => Math.floor(Date.now() / HOUR) * HOUR;
/** Forty minutes into this hour: in an hourly sale window's second half, where retention passes retire partitions. */
const fortyPast = () => thisHour() + 40 * 60_000;
const attemptsOf = async (db: pg.Pool | pg.Client, where = 'true') =>
  (
    await db.query<{ row: string }>(
      `SELECT row_to_json(a)::text AS row FROM (SELECT id, sale_id, item_id, user_id, outcome, code,
              to_char(attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at
       FROM checkout_attempts WHERE ${where}) a ORDER BY 1`,
    )
  ).rows.map((r) => r.row);

/** One refused attempt in `app`'s active sale, written through the data path; resolves to the sale's id. */
async function attemptInActiveSale(app: App, clock: Clock): Promise<string> {
  const sale = (await app.deps.sales.active()).id;
  await app.deps.data.attempts.insert({
    saleId: sale,
    itemId: `${sale}-00001`,
    userId: 'u1',
    outcome: 'ITEM_SOLD',
    code: null,
    at: clock.now(),
  });
  return sale;
}

/**
 * A database of its own, migrated only as far as `files` (today's schema at
 * some earlier migration), dropped after the suite: for a migration's test.
 */
function scratchDatabase(prefix: string) {
  const name = `${prefix}_${Date.now().toString(36)}`;
  const url = `${PG_URL}/${name}`;
  let dir: string | undefined;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: `${PG_URL}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return {
    url,
    /** Creates it with these migrations only; returns those applied. */
    async migrateUpTo(files: string[]): Promise<string[]> {
      dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
      const migrations = new URL('../src/db/migrations/', import.meta.url);
      for (const file of files) await copyFile(new URL(file, migrations), join(dir, file));
      return migrate(url, pathToFileURL(`${dir}/`));
    },
  };
}

/**
 * A suite's environment: a one-hour ATTEMPTS_RETENTION, hourly sales of 50
 * items, and an ARCHIVE_DIR of its own (an app may name another), removed
 * after the suite.
 */
function retentionSuite(prefix: string) {
  const suite = {} as { env: TestEnv; dir: string };
  before(async () => {
    suite.dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    suite.env = await testEnv({
      ATTEMPTS_RETENTION: '1h',
      SALE_ITEMS: '50',
      ARCHIVE_DIR: suite.dir,
      SALE_DURATION: '3600',
    });
  });
  after(async () => {
    await suite.env.close();
    await rm(suite.dir, { recursive: true, force: true });
  });
  return suite;
}

describe('migration 003, on a database of today’s schema with attempts in it', () => {
  const { url, migrateUpTo } = scratchDatabase('fs_test_mig');

  it('partitions checkout_attempts by sale in place, keeping every row and every id', async () => {
    assert.deepEqual(await migrateUpTo(['001_init.sql']), ['001_init.sql']);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(
        `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
         SELECT s, s || '-' || lpad(g::text, 5, '0'), 'u' || g, CASE WHEN g % 3 = 0 THEN 'OK' ELSE 'ITEM_SOLD' END,
                CASE WHEN g % 3 = 0 THEN s || '-' || md5(g::text) END, now() - g * interval '1 second'
         FROM unnest(ARRAY['2026010100', '2026010101', '2026010102']) AS s, generate_series(1, 500) AS g`,
      );
      const before = await attemptsOf(client);
      assert.equal(before.length, 1500);

      assert.deepEqual(await migrate(url), [
        '002_admin.sql',
        '003_partition_attempts.sql',
        '004_attempts_without_default.sql',
      ]);
      assert.deepEqual(await attemptsOf(client), before, 'a row was lost or changed');
      const { rows } = await client.query<{ kind: string }>(
        "SELECT relkind AS kind FROM pg_class WHERE relname = 'checkout_attempts'",
      );
      assert.equal(rows[0]!.kind, 'p', 'checkout_attempts is not partitioned');
      // New rows continue after the highest id, and the old codes are still found by (sale, code).
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
         VALUES ('2026010102', '2026010102-00001', 'u', 'ITEM_SOLD', NULL, now()) RETURNING id`,
      );
      assert.ok(Number(inserted.rows[0]!.id) > 1500);
      const found = await client.query(
        "SELECT 1 FROM checkout_attempts WHERE sale_id = '2026010101' AND code = '2026010101-' || md5('3')",
      );
      assert.equal(found.rowCount, 1);
    } finally {
      await client.end();
    }
  });
});

describe('migration 004, on a database with attempts in the DEFAULT partition', () => {
  const { url, migrateUpTo } = scratchDatabase('fs_test_mig4');

  it('moves every row of the DEFAULT partition into a partition of its sale, keeping ids, and drops it', async () => {
    await migrateUpTo(['001_init.sql', '002_admin.sql', '003_partition_attempts.sql']);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      // One sale with its partition; two whose rows went to the DEFAULT partition.
      await client.query(
        "CREATE TABLE checkout_attempts_2026010100 PARTITION OF checkout_attempts FOR VALUES IN ('2026010100')",
      );
      await client.query(
        `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
         SELECT s, s || '-' || lpad(g::text, 5, '0'), 'u' || g, CASE WHEN g % 3 = 0 THEN 'OK' ELSE 'ITEM_SOLD' END,
                CASE WHEN g % 3 = 0 THEN s || '-' || md5(g::text) END, now() - g * interval '1 second'
         FROM unnest(ARRAY['2026010100', '2026010101', '2026010102']) AS s, generate_series(1, 200) AS g`,
      );
      const inDefault = await client.query('SELECT count(*)::int AS n FROM checkout_attempts_default');
      assert.equal(inDefault.rows[0].n, 400);
      const before = await attemptsOf(client);

      assert.deepEqual(await migrate(url), ['004_attempts_without_default.sql']);
      assert.deepEqual(await attemptsOf(client), before, 'a row was lost or changed');
      const { rows } = await client.query<{ t: string; sale_id: string; n: number }>(
        `SELECT tableoid::regclass::text AS t, sale_id, count(*)::int AS n FROM checkout_attempts
         GROUP BY 1, 2 ORDER BY 2`,
      );
      assert.deepEqual(
        rows.map((r) => [r.t, r.sale_id, r.n]),
        ['2026010100', '2026010101', '2026010102'].map((s) => [`checkout_attempts_${s}`, s, 200]),
      );
      const gone = await client.query("SELECT to_regclass('checkout_attempts_default') AS t");
      assert.equal(gone.rows[0].t, null, 'the DEFAULT partition is still there');
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
         VALUES ('2026010101', '2026010101-00001', 'u', 'ITEM_SOLD', NULL, now()) RETURNING id`,
      );
      assert.ok(Number(inserted.rows[0]!.id) > 600, 'new ids do not continue after the moved rows');
    } finally {
      await client.end();
    }
  });
});

describe('POST /checkout, for a sale that lost its partition', () => {
  let env: TestEnv;
  before(async () => (env = await testEnv()));
  after(() => env.close());

  it('answers 200 from two instances at once, and every attempt lands in a partition created for the sale', async () => {
    const apps = [await env.app(), await env.app()];
    const sale = apps[0]!.deps.ids.windowContaining(Date.now()).id;
    await env.pg.query(`ALTER TABLE checkout_attempts DETACH PARTITION checkout_attempts_${sale}`);
    await env.pg.query(`DROP TABLE checkout_attempts_${sale}`);
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        apps[i % 2]!.inject({ method: 'POST', url: `/checkout?user_id=u${i}&id=${sale}-0000${i % 10}` }),
      ),
    );
    assert.deepEqual(
      answers.map((r) => r.statusCode),
      answers.map(() => 200),
      answers.map((r) => r.body).join('\n'),
    );
    const { rows } = await env.pg.query<{ t: string; n: number }>(
      'SELECT tableoid::regclass::text AS t, count(*)::int AS n FROM checkout_attempts GROUP BY 1',
    );
    assert.deepEqual(rows, [{ t: `checkout_attempts_${sale}`, n: 20 }]);
    assert.equal(await apps[0]!.deps.data.partitions.ensure(sale), false, 'ensure is not idempotent');
  });
});

describe('retention (ATTEMPTS_RETENTION), archives and npm run restore-archive', () => {
  const suite = retentionSuite('fs-archive');

  it('archives an expired sale’s partition with its count and checksum, keeps it while the archive fails, drops it once archived, and restores it', async () => {
    const { env, dir } = suite;
    // Two sales three hours and one hour back, attempts in each, then now.
    // Forty minutes into an hour, whatever the time: past the half hour
    // before which passes retire nothing, and not in an hour's last minute,
    // where the scheduler also creates the next sale's partition ahead, which
    // expires with the old one and doubles the failed archives (seen in CI).
    const clock = offsetClock(fortyPast() - 3 * HOUR - Date.now());
    const notADir = join(dir, 'file');
    await writeFile(notADir, '');
    const failing = await env.app({ clock, env: { ARCHIVE_DIR: join(notADir, 'archive') } });
    const oldSale = (await failing.deps.sales.active()).id;
    // Written through the data path: Redis has long expired a sale hours old.
    const attempt = (saleId: string, i: number) =>
      failing.deps.data.attempts.insert({
        saleId,
        itemId: `${saleId}-0000${i % 5}`,
        userId: `u${i % 7}`,
        outcome: i % 4 === 0 ? 'OK' : 'ITEM_SOLD',
        code: i % 4 === 0 ? `${saleId}-${String(i).padStart(32, '0')}` : null,
        at: clock.now(),
      });
    await Promise.all(Array.from({ length: 30 }, (_, i) => attempt(oldSale, i)));
    clock.advance(2 * HOUR);
    const recentSale = (await failing.deps.sales.active()).id;
    await attempt(recentSale, 1);
    clock.advance(HOUR);
    const archived = await attemptsOf(env.pg, `sale_id = '${oldSale}'`);
    assert.equal(archived.length, 30);

    await failing.deps.retention.run();
    const runs = async (app: typeof failing, outcome: string) =>
      (await app.deps.metrics.archiveRuns.get()).values.find((v) => v.labels.outcome === outcome)?.value;
    assert.equal(await runs(failing, 'failed'), 1);
    const kept = await env.pg.query(`SELECT count(*)::int AS n FROM retired.checkout_attempts_${oldSale}`);
    assert.equal(kept.rows[0].n, 30, 'a failed archive dropped or lost rows');
    assert.equal((await attemptsOf(env.pg, `sale_id = '${recentSale}'`)).length, 1, 'a recent sale was retired');

    const archiving = await env.app({ clock, env: { ARCHIVE_DIR: dir } });
    await archiving.deps.retention.run();
    assert.equal(await runs(archiving, 'ok'), 1);
    const file = join(dir, `checkout_attempts_${oldSale}.csv.gz`);
    const manifest = JSON.parse(await readFile(manifestPath(file), 'utf8')) as Manifest;
    assert.equal(manifest.rows, 30);
    assert.deepEqual(manifest.sales, [oldSale]);
    await verifyArchive(file);
    const gone = await env.pg.query(`SELECT to_regclass('retired.checkout_attempts_${oldSale}') AS t`);
    assert.equal(gone.rows[0].t, null, 'the archived partition was not dropped');
    assert.equal((await attemptsOf(env.pg, `sale_id = '${oldSale}'`)).length, 0);

    const run = promisify(execFile);
    const cli = join(import.meta.dirname, '../tools/restore-archive/main.js');
    const { stdout } = await run(process.execPath, [cli, file, 'investigation'], {
      env: { ...process.env, DATABASE_URL: env.config.DATABASE_URL },
    });
    assert.match(stdout, /restored 30 rows/);
    const restored = (
      await env.pg.query<{ row: string }>(
        `SELECT row_to_json(a)::text AS row FROM (SELECT id, sale_id, item_id, user_id, outcome, code,
                to_char(attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at FROM investigation) a
         ORDER BY 1`,
      )
    ).rows.map((r) => r.row);
    assert.deepEqual(restored, archived, 'the round trip changed a row');

    // A tampered archive is refused, and leaves no table behind.
    await writeFile(file, Buffer.concat([await readFile(file), Buffer.from('x')]));
    await assert.rejects(
      run(process.execPath, [cli, file, 'tampered'], {
        env: { ...process.env, DATABASE_URL: env.config.DATABASE_URL },
      }),
      /does not match its manifest/,
    );
  });
});

describe('retention in a sale window’s first half (RETENTION_OFFSET_SECONDS: half the window by default)', () => {
  const suite = retentionSuite('fs-offset');

  it('keeps a partition that fell due on the hour, while that hour’s stampede runs, and retires it from half past', async () => {
    const { env, dir } = suite;
    const hour = thisHour();
    const clock = offsetClock(hour - 2 * HOUR + 60_000 - Date.now()); // a minute into the sale two hours back
    const app = await env.app({ clock });
    const sale = await attemptInActiveSale(app, clock);
    const where = async () =>
      (
        await env.pg.query<{ schema: string }>(
          'SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1',
          [`checkout_attempts_${sale}`],
        )
      ).rows.map((r) => r.schema);

    // The sale ended an hour ago, on the hour: due since then, past ATTEMPTS_RETENTION.
    for (const minutesPast of [1, 29]) {
      clock.set(hour + minutesPast * 60_000);
      await app.deps.retention.run();
      assert.deepEqual(await where(), ['public'], `retired at ${minutesPast} past the hour`);
      assert.deepEqual(await readdir(dir), []);
    }
    clock.set(hour + 30 * 60_000);
    await app.deps.retention.run();
    assert.deepEqual(await where(), [], 'not retired at half past');
    assert.equal((await verifyArchive(join(dir, `checkout_attempts_${sale}.csv.gz`))).rows, 1);
  });
});

describe('retention, when several partitions fall due at once (a retention turned on or shortened)', () => {
  const suite = retentionSuite('fs-many');

  it('starts no archive once the sale window’s quiet part is over, and the next quiet part retires the rest', async () => {
    const { env, dir } = suite;
    const archiveOf = (sale: string) => join(dir, `checkout_attempts_${sale}.csv.gz`);
    const base = offsetClock(fortyPast() - 4 * HOUR - Date.now()); // in the quiet half of the hour, as above
    /** Once this archive is written, the business clock stands 25 minutes on: at five past, out of the quiet part. */
    let quietUntil: string | undefined;
    const clock: Clock = { now: () => base.now() + (quietUntil && existsSync(quietUntil) ? 25 * 60_000 : 0) };
    const app = await env.app({ clock });
    const sales = [await attemptInActiveSale(app, clock)];
    for (let i = 0; i < 2; i++) {
      base.advance(HOUR);
      sales.push(await attemptInActiveSale(app, clock));
    }
    base.advance(HOUR); // the first two sales are past the retention, the third not yet
    const schemas = async () =>
      (
        await env.pg.query<{ table: string; schema: string }>(
          `SELECT c.relname AS table, n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relname = ANY ($1) ORDER BY c.relname`,
          [sales.map((s) => `checkout_attempts_${s}`)],
        )
      ).rows.map((r) => `${r.table} ${r.schema}`);

    quietUntil = archiveOf(sales[0]!);
    await app.deps.retention.run();
    assert.equal((await verifyArchive(archiveOf(sales[0]!))).rows, 1);
    assert.deepEqual(await schemas(), [`checkout_attempts_${sales[1]} public`, `checkout_attempts_${sales[2]} public`]);
    assert.deepEqual((await readdir(dir)).sort(), [
      `checkout_attempts_${sales[0]}.csv.gz`,
      `checkout_attempts_${sales[0]}.manifest.json`,
    ]);

    quietUntil = undefined;
    await app.deps.retention.run();
    assert.equal((await verifyArchive(archiveOf(sales[1]!))).rows, 1);
    assert.deepEqual(await schemas(), [`checkout_attempts_${sales[2]} public`]);
  });
});

describe('retention’s archive connection, kept from one pass to the next', () => {
  const suite = retentionSuite('fs-kept');

  it('archives over the connection the last pass left open, and over a new one once PostgreSQL dropped it or it stopped answering', async () => {
    const { env, dir } = suite;
    const clock = offsetClock(fortyPast() - 4 * HOUR - Date.now()); // in the quiet half of the hour, as above
    const app = await env.app({ clock });
    /** The archive's connection's backend, `besides` one that has not exited yet. */
    const archiveConnection = async (besides = 0) => {
      const { rows } = await env.pg.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'flashsale-archive' AND pid <> $1`,
        [besides],
      );
      assert.equal(rows.length, 1, 'the archive’s connection was not kept, or not alone');
      return rows[0]!.pid;
    };
    /** An hour on, a pass retires `sale` (ended 1 h 40 min before: past the retention, the next sale not), no archive failing. */
    const passRetires = async (sale: string) => {
      clock.advance(HOUR);
      await app.deps.retention.run();
      assert.equal((await verifyArchive(join(dir, `checkout_attempts_${sale}.csv.gz`))).rows, 1);
      const failed = (await app.deps.metrics.archiveRuns.get()).values.find((v) => v.labels.outcome === 'failed');
      assert.equal(failed?.value ?? 0, 0, 'an archive failed');
    };

    const sales = [await attemptInActiveSale(app, clock)];
    for (let i = 0; i < 2; i++) {
      clock.advance(HOUR);
      sales.push(await attemptInActiveSale(app, clock));
    }
    clock.advance(-HOUR); // each pass below retires one sale, ATTEMPTS_RETENTION (an hour) past its end
    await passRetires(sales[0]!);
    const first = await archiveConnection();

    // PostgreSQL drops it between passes (a restart, an idle timeout): the client hears of it.
    await env.pg.query('SELECT pg_terminate_backend($1)', [first]);
    await passRetires(sales[1]!);
    const second = await archiveConnection();
    assert.notEqual(second, first);

    // It stops answering (a firewall dropped it silently): its backend, stopped, is as silent.
    // Woken after 10 s in any case, so that a pass that waited on it for good fails here instead of hanging.
    process.kill(second, 'SIGSTOP');
    const wake = setTimeout(() => process.kill(second, 'SIGCONT'), 10_000);
    try {
      await passRetires(sales[2]!);
      await archiveConnection(second);
    } finally {
      clearTimeout(wake);
      process.kill(second, 'SIGCONT');
    }
  });
});

describe('retention, when a detach is held up past its lock timeout (DETACH … CONCURRENTLY left pending)', () => {
  const suite = retentionSuite('fs-pending');

  it('keeps checkout answering, and the next pass finalizes the detach, then archives and drops both expired partitions', async () => {
    const { env, dir } = suite;
    const clock = offsetClock(fortyPast() - 4 * HOUR - Date.now()); // in the quiet half of the hour, as above
    const app = await env.app({ clock });
    const attempt = (saleId: string, i: number) =>
      app.deps.data.attempts.insert({
        saleId,
        itemId: `${saleId}-0000${i % 5}`,
        userId: `u${i}`,
        outcome: 'ITEM_SOLD',
        code: null,
        at: clock.now(),
      });
    const older = (await app.deps.sales.active()).id;
    await Promise.all(Array.from({ length: 10 }, (_, i) => attempt(older, i)));
    clock.advance(HOUR);
    const old = (await app.deps.sales.active()).id;
    await Promise.all(Array.from({ length: 12 }, (_, i) => attempt(old, i)));
    clock.advance(3 * HOUR); // both ended two hours or more ago: past the retention
    const current = (await app.deps.sales.active()).id;

    // A transaction that read checkout_attempts and stays open: the detach waits for it, then gives up.
    const reader = await env.pg.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM checkout_attempts WHERE sale_id = $1', [current]);
      const [, ...answers] = await Promise.all([
        app.deps.retention.run(),
        ...Array.from({ length: 5 }, (_, i) =>
          app.inject({ method: 'POST', url: `/checkout?user_id=c${i}&id=${current}-0000${i}` }),
        ),
      ]);
      assert.deepEqual(
        answers.map((r) => r.statusCode),
        [200, 200, 200, 200, 200],
      );
      const { rows } = await env.pg.query<{ t: string; schema: string; pending: boolean | null }>(
        `SELECT c.relname AS t, n.nspname AS schema, i.inhdetachpending AS pending
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
         WHERE c.relname = ANY ($1) ORDER BY 1`,
        [[`checkout_attempts_${older}`, `checkout_attempts_${old}`]],
      );
      // The first detach was interrupted; PostgreSQL refuses the second while one is pending.
      assert.deepEqual(rows, [
        { t: `checkout_attempts_${older}`, schema: 'retired', pending: true },
        { t: `checkout_attempts_${old}`, schema: 'retired', pending: false },
      ]);
      assert.equal((await readdir(dir)).length, 0, 'a partition was archived before it was detached');
      await reader.query('COMMIT');
    } finally {
      reader.release();
    }

    await app.deps.retention.run();
    for (const [sale, rows] of [
      [older, 10],
      [old, 12],
    ] as const) {
      const file = join(dir, `checkout_attempts_${sale}.csv.gz`);
      const manifest = await verifyArchive(file);
      assert.deepEqual([manifest.sales, manifest.rows], [[sale], rows]);
      const gone = await env.pg.query(`SELECT to_regclass('retired.checkout_attempts_${sale}') AS t`);
      assert.equal(gone.rows[0].t, null, `checkout_attempts_${sale} was not dropped`);
    }
    const live = await env.pg.query('SELECT count(*)::int AS n FROM checkout_attempts WHERE sale_id = $1', [current]);
    assert.equal(live.rows[0].n, 5);
  });
});
