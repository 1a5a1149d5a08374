import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { migrate } from '../src/db/migrate.js';
import { auditSale, type Confirmed } from './audit.js';
import { PG_URL, testEnv, type TestEnv } from './helpers.js';

const run = promisify(execFile);
const USER_LIMIT = 3;

describe('pg_dump -Fc, then pg_restore into a fresh database (docs/operations.md, "Backups")', () => {
  let env: TestEnv;
  let dir: string;
  const restoredName = `fs_test_restored_${Date.now().toString(36)}`;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fs-backup-'));
    env = await testEnv({ SALE_ITEMS: '50', USER_LIMIT: String(USER_LIMIT) });
  });
  after(async () => {
    await env.close();
    const admin = new pg.Client({ connectionString: `${PG_URL}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${restoredName} WITH (FORCE)`);
    await admin.end();
    await rm(dir, { recursive: true, force: true });
  });

  it('restores a database the service starts on, where the sale’s audit holds and its codes still buy', async () => {
    const app = await env.app();
    const sale = app.deps.ids.windowContaining(Date.now()).id;
    const confirmed: Confirmed[] = [];
    const pending: string[] = [];
    for (let i = 0; i < 12; i++) {
      const userId = `u${i % 4}`;
      const itemId = app.deps.ids.itemId(sale, i);
      const co = await app.inject({ method: 'POST', url: `/checkout?user_id=${userId}&id=${itemId}` });
      if (co.statusCode !== 200) continue;
      const { code } = JSON.parse(co.body) as { code: string };
      if (i % 2 === 1) {
        pending.push(code); // checked out, bought only after the restore
        continue;
      }
      const res = await app.inject({ method: 'POST', url: `/purchase?code=${code}` });
      if (res.statusCode === 200) confirmed.push({ code, userId, itemId });
    }
    assert.ok(confirmed.length > 0 && pending.length > 0);

    const dump = join(dir, 'flashsale.dump');
    await run('pg_dump', ['-Fc', '-f', dump, env.config.DATABASE_URL]);
    await run('createdb', ['-h', '127.0.0.1', '-U', 'postgres', restoredName]);
    await run('pg_restore', ['--exit-on-error', '--no-owner', '-d', `${PG_URL}/${restoredName}`, dump]);

    // The service starts on the restored database (its migrations find nothing to do).
    const restoredUrl = `${PG_URL}/${restoredName}`;
    assert.deepEqual(await migrate(restoredUrl), []);
    const restored = await env.app({ env: { DATABASE_URL: restoredUrl, REDIS_PREFIX: `${env.env.REDIS_PREFIX}:r` } });
    const pool = new pg.Pool({ connectionString: restoredUrl, max: 2 });
    try {
      await auditSale(pool, sale, USER_LIMIT, confirmed);
      // Redis (a fresh prefix) is rebuilt from the restored PostgreSQL: bought items stay sold, codes still buy.
      for (const c of confirmed) {
        const again = await restored.inject({ method: 'POST', url: `/checkout?user_id=other&id=${c.itemId}` });
        assert.equal(again.statusCode, 409, again.body);
      }
      const bought = await restored.inject({ method: 'POST', url: `/purchase?code=${pending[0]}` });
      assert.equal(bought.statusCode, 200, bought.body);
      const partitions = await restored.deps.data.partitions.list();
      assert.ok(
        partitions.some((p) => p.saleIds.includes(sale)),
        'the restored database lost its partitions',
      );
    } finally {
      await pool.end();
    }
  });
});
