/**
 * Creates the database if it does not exist yet, then applies the numbered,
 * append-only SQL files in migrations/ that have not run. An advisory lock
 * makes N instances starting at once apply each file exactly once. Each
 * applied file's SHA-256 is recorded; a file edited after it was applied
 * stops start-up (MigrationChanged), since the database would silently
 * differ from what the file says: changes go into a new file.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';

import pg from 'pg';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);
const MIGRATION_LOCK = 7_401_001; // any constant; shared by every instance

/** An applied migration's file no longer matches what was applied: a person must decide, retrying will not help. */
export class MigrationChanged extends Error {}

export async function createDatabaseIfMissing(databaseUrl: string): Promise<void> {
  const probe = new pg.Client({ connectionString: databaseUrl });
  try {
    await probe.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000: database does not exist
  } finally {
    await probe.end().catch(() => {});
  }
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42P04') throw err; // created meanwhile by another instance
  } finally {
    await admin.end();
  }
}

export async function migrate(databaseUrl: string, dir: URL = MIGRATIONS_DIR): Promise<string[]> {
  await createDatabaseIfMissing(databaseUrl);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    // Databases migrated before checksums were recorded get theirs on first sight.
    await client.query('ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text');
    const done = new Map(
      (
        await client.query<{ version: number; checksum: string | null }>(
          'SELECT version, checksum FROM schema_migrations',
        )
      ).rows.map((r) => [r.version, r.checksum]),
    );
    const files = (await readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
    const applied: string[] = [];
    for (const file of files) {
      const version = Number.parseInt(file, 10);
      const sql = await readFile(new URL(file, dir), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      if (done.has(version)) {
        const recorded = done.get(version);
        if (recorded === null) {
          await client.query('UPDATE schema_migrations SET checksum = $2 WHERE version = $1', [version, checksum]);
        } else if (recorded !== checksum) {
          throw new MigrationChanged(
            `migration ${file} was edited after it was applied (sha256 ${recorded!.slice(0, 12)} applied, ` +
              `${checksum.slice(0, 12)} on disk): restore it and put the change in a new migration`,
          );
        }
        continue;
      }
      await client.query('BEGIN');
      await client.query(sql);
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        version,
        file,
        checksum,
      ]);
      await client.query('COMMIT');
      applied.push(file);
    }
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
