import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { offsetClock } from '../src/clock.js';
import { migrate } from '../src/db/migrate.js';
import { manifestPath, verifyArchive, type Manifest } from '../src/retention/archive.js';
import { PG_URL, testEnv, type TestEnv } from './helpers.js';

const HOUR = 3_600_000;
const attemptsOf = async (db: pg.Pool | pg.Client, where = 'true') =>
  (
    await db.query<{ row: string }>(
      `SELECT row_to_json(a)::text AS row FROM (SELECT id, sale_id, item_id, user_id, outcome, code,
              to_char(attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at
       FROM checkout_attempts WHERE ${where}) a ORDER BY 1`,
    )
  ).rows.map((r) => r.row);

describe('migration 003, on a database of today’s schema with attempts in it', () => {
  const name = `fs_test_mig_${Date.now().toString(36)}`;
  const url = `${PG_URL}/${name}`;
  let dir: string;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: `${PG_URL}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });

  it('partitions checkout_attempts by sale in place, keeping every row and every id', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fs-mig-'));
    const migrations = new URL('../src/db/migrations/', import.meta.url);
    await copyFile(new URL('001_init.sql', migrations), join(dir, '001_init.sql'));
    assert.deepEqual(await migrate(url, pathToFileURL(`${dir}/`)), ['001_init.sql']);
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

      assert.deepEqual(await migrate(url), ['002_admin.sql', '003_partition_attempts.sql']);
      assert.deepEqual(await attemptsOf(client), before, 'a row was lost or changed');
      const { rows } = await client.query<{ kind: string }>(
        "SELECT relkind AS kind FROM pg_class WHERE relname = 'checkout_attempts'",
      );
      assert.equal(rows[0]!.kind, 'p', 'checkout_attempts is not partitioned');
      // New rows continue after the highest id, and the old codes are still found by (sale, code).
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
         VALUES ('2026010103', '2026010103-00001', 'u', 'ITEM_SOLD', NULL, now()) RETURNING id`,
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

describe('POST /checkout, for a sale that lost its partition, is still recorded (DEFAULT partition)', () => {
  let env: TestEnv;
  before(async () => (env = await testEnv()));
  after(() => env.close());

  it('answers 200, lands in the DEFAULT partition, and moves into the sale’s partition when it is created again', async () => {
    const app = await env.app();
    const sale = app.deps.ids.windowContaining(Date.now()).id;
    await env.pg.query(`ALTER TABLE checkout_attempts DETACH PARTITION checkout_attempts_${sale}`);
    await env.pg.query(`DROP TABLE checkout_attempts_${sale}`);
    const res = await app.inject({ method: 'POST', url: `/checkout?user_id=u1&id=${sale}-00001` });
    assert.equal(res.statusCode, 200, res.body);
    const where = async () =>
      (await env.pg.query<{ t: string }>(`SELECT tableoid::regclass::text AS t FROM checkout_attempts`)).rows.map(
        (r) => r.t,
      );
    assert.deepEqual(await where(), ['checkout_attempts_default']);
    assert.equal(await app.deps.data.partitions.ensure(sale), true);
    assert.equal(await app.deps.data.partitions.ensure(sale), false, 'ensure is not idempotent');
    assert.deepEqual(await where(), [`checkout_attempts_${sale}`]);
  });
});

describe('retention (ATTEMPTS_RETENTION), archives and npm run restore-archive', () => {
  let env: TestEnv;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fs-archive-'));
    env = await testEnv({ ATTEMPTS_RETENTION: '1h', SALE_ITEMS: '50' });
  });
  after(async () => {
    await env.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('archives an expired sale’s partition with its count and checksum, keeps it while the archive fails, drops it once archived, and restores it', async () => {
    // Two sales three hours and one hour back, attempts in each, then now.
    const clock = offsetClock(-3 * HOUR);
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
