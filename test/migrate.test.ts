/**
 * Migrations: numbered, append-only SQL files, each applied once, with its
 * checksum recorded; an applied file that was edited afterwards stops
 * start-up instead of leaving the database silently different from the code.
 */
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';

import { migrate, MigrationChanged } from '../src/db/migrate.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, startService } from './process.js';

const envs: TestEnv[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(envs.map((e) => e.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function migratedEnv() {
  const env = await testEnv();
  envs.push(env);
  return env;
}

/** A copy of the shipped migrations that a test may edit. */
function migrationsCopy() {
  const dir = mkdtempSync(join(tmpdir(), 'flashsale-migrations-'));
  dirs.push(dir);
  cpSync(new URL('../src/db/migrations/', import.meta.url), dir, { recursive: true });
  return { dir: pathToFileURL(`${dir}/`), file: join(dir, '001_init.sql') };
}

describe('migrations', () => {
  it('apply each file once and record its checksum; running again applies nothing', async () => {
    const env = await migratedEnv();
    assert.deepEqual(await migrate(env.config.DATABASE_URL), []);
    const { rows } = await env.pg.query<{ name: string; checksum: string }>(
      'SELECT name, checksum FROM schema_migrations',
    );
    assert.equal(rows[0]?.name, '001_init.sql');
    assert.match(rows[0]!.checksum, /^[0-9a-f]{64}$/);
  });

  it('an applied migration edited afterwards is refused, naming the file', async () => {
    const env = await migratedEnv();
    const copy = migrationsCopy();
    assert.deepEqual(await migrate(env.config.DATABASE_URL, copy.dir), []);
    appendFileSync(copy.file, '\nALTER TABLE sales ADD COLUMN sneaky int;\n');
    await assert.rejects(migrate(env.config.DATABASE_URL, copy.dir), (err: Error) => {
      assert.ok(err instanceof MigrationChanged);
      assert.match(err.message, /migration 001_init\.sql was edited after it was applied/);
      return true;
    });
  });

  it('a database migrated before checksums existed gets them recorded, not refused', async () => {
    const env = await migratedEnv();
    await env.pg.query('UPDATE schema_migrations SET checksum = NULL');
    assert.deepEqual(await migrate(env.config.DATABASE_URL), []);
    const { rows } = await env.pg.query('SELECT 1 FROM schema_migrations WHERE checksum IS NULL');
    assert.equal(rows.length, 0);
  });

  it('npm start, on a database whose applied migration differs from the file, exits 1 with one line saying so', async () => {
    const env = await migratedEnv();
    await env.pg.query(`UPDATE schema_migrations SET checksum = repeat('0', 64)`);
    const proc = startService({ ...env.env, LOG_LEVEL: 'info', PORT: String(await freePort()) });
    assert.equal(await proc.exited, 1);
    const lines = proc.output().trim().split('\n');
    assert.equal(lines.length, 1, proc.output());
    assert.match(lines[0]!, /start-up refused: migration 001_init\.sql was edited after it was applied/);
  });
});
