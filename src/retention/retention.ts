/**
 * Retention of checkout attempts (ATTEMPTS_RETENTION; 0 keeps everything).
 * A pass, on one instance at a time (a Redis lock), retires every partition
 * whose sales all ended longer ago than the retention: it is detached into
 * the schema `retired`, archived into ARCHIVE_DIR (archive.ts), and dropped
 * only once its archive and manifest are on disk. A failed archive leaves the
 * table where it is; the next pass tries again, and the age of the oldest
 * partition (a metric, and an alert) shows it is stuck.
 */
import type { Infra } from '../infra.js';
import { retentionLockKey } from '../redis/keys.js';
import { writeArchive } from './archive.js';

/** Longest a detach may make checkout inserts queue behind its catalog lock; past it, the next pass retries. */
const DETACH_LOCK_TIMEOUT_MS = 200;
/** Longer than any archive should take; every step is idempotent if two passes ever overlap. */
const LOCK_TTL_MS = 15 * 60_000;

type RetentionDeps = Pick<Infra, 'config' | 'clock' | 'log' | 'metrics' | 'locks' | 'data'>;

export function createRetention({ config, clock, log, metrics, locks, data }: RetentionDeps) {
  /** How often app.ts runs a pass: RETENTION_INTERVAL_MS (a minute), or a sale's length if shorter. */
  const intervalMs = Math.min(config.RETENTION_INTERVAL_MS, config.SALE_DURATION * 1000);

  /** One pass; a no-op when retention is off or another instance holds the lock. */
  async function run(): Promise<void> {
    if (config.ATTEMPTS_RETENTION === 0) return;
    const release = await locks
      .acquire('retention', retentionLockKey(config.REDIS_PREFIX), LOCK_TTL_MS)
      .catch(() => undefined);
    if (!release) return;
    try {
      await retire();
    } finally {
      await release().catch(() => {});
    }
  }

  async function retire(): Promise<void> {
    const cutoff = clock.now() - config.ATTEMPTS_RETENTION;
    const partitions = await data.partitions.list();
    for (const p of partitions) {
      if (p.schema !== 'public' || p.endsAt === null || p.endsAt.getTime() > cutoff) continue;
      try {
        await data.partitions.detach(p, DETACH_LOCK_TIMEOUT_MS);
        p.schema = 'retired';
      } catch (err) {
        log.warn({ err, table: p.table }, 'could not detach an expired partition; retrying next pass');
      }
    }
    for (const p of partitions) {
      if (p.schema !== 'retired') continue;
      try {
        const manifest = await writeArchive(data.partitions, config.ARCHIVE_DIR, p, new Date(clock.now()));
        await data.partitions.dropRetired(p.table);
        metrics.archiveRuns.inc({ outcome: 'ok' });
        metrics.archiveBytes.inc(manifest.bytes);
        metrics.rowsRetired.inc(manifest.rows);
        log.info({ table: p.table, rows: manifest.rows, bytes: manifest.bytes }, 'partition archived and dropped');
      } catch (err) {
        metrics.archiveRuns.inc({ outcome: 'failed' });
        log.error({ err, table: p.table }, 'archive failed; the partition is kept and retried next pass');
      }
    }
  }

  metrics.produce(
    ['db_attempts_partitions', 'db_attempts_oldest_partition_age_seconds', 'db_attempts_retention_seconds'],
    async ([count, oldest, retention]) => {
      retention.set(config.ATTEMPTS_RETENTION / 1000);
      const partitions = await data.partitions.list().catch(() => undefined);
      if (!partitions) return;
      count.set(partitions.length);
      const first = partitions[0]?.startsAt;
      oldest.set(first ? Math.max(0, (clock.now() - first.getTime()) / 1000) : 0);
    },
  );
  metrics.produce(['db_database_size_bytes'], async ([database]) => {
    const sizes = await data.partitions.sizes().catch(() => undefined);
    if (!sizes) return;
    database.set(sizes.database);
    for (const [table, bytes] of Object.entries(sizes.tables)) metrics.dbTableSize.set({ table }, bytes);
  });

  return { run, intervalMs };
}

export type Retention = ReturnType<typeof createRetention>;
