/**
 * Retention of checkout attempts (ATTEMPTS_RETENTION; 0 keeps everything).
 * A pass, on one instance at a time (a Redis lock), retires every partition
 * whose sales all ended longer ago than the retention: moved into the schema
 * `retired`, detached CONCURRENTLY, archived into ARCHIVE_DIR (archive.ts),
 * and dropped only once its archive and manifest are on disk. Each step is
 * read back from the catalog, so a pass picks up wherever an earlier one
 * stopped (a crash, a lock timeout, a failed archive): the table stays in
 * `retired` until it is archived, and the age of the oldest partition (a
 * metric, and an alert) shows a retirement that is stuck.
 *
 * Passes retire only in a sale window's quiet part, RETENTION_OFFSET_SECONDS
 * (half the window by default) after its start. A partition falls due one
 * retention after its sale's end, which is another sale's start: without the
 * offset, every archive would run in the first minute of a stampede, on the
 * cores serving it.
 */
import type { Infra } from '../infra.js';
import type { Partition } from '../db/partitions.js';
import { retentionLockKey } from '../redis/keys.js';
import { createArchiver, LONGEST_ARCHIVE_MS, writeArchive } from './archive.js';

/**
 * Longest a step waits for a lock: the move into `retired` for a reader of the
 * old partition, the detach for the transactions using checkout_attempts
 * (never for checkout's inserts, which its locks do not conflict with). Past
 * it the step gives up and the next pass takes it up again.
 */
const LOCK_TIMEOUT_MS = 200;
/**
 * How long a pass holds the retention lock. A pass starts an archive only
 * while the lock will outlast it by a minute (LONGEST_ARCHIVE_MS, archive.ts),
 * and leaves the rest to the next pass: two instances must never write the
 * same archive at once.
 */
const LOCK_TTL_MS = 15 * 60_000;
const LOCK_SPARE_MS = 60_000;

type RetentionDeps = Pick<Infra, 'config' | 'clock' | 'log' | 'metrics' | 'locks' | 'data' | 'ids'>;

export function createRetention({ config, clock, log, metrics, locks, data, ids }: RetentionDeps) {
  const quietAfterMs = (config.RETENTION_OFFSET_SECONDS ?? config.SALE_DURATION / 2) * 1000;
  /** How often scheduler.ts runs a pass: RETENTION_INTERVAL_MS (a minute), or less if a window's quiet part is shorter. */
  const intervalMs = Math.min(config.RETENTION_INTERVAL_MS, config.SALE_DURATION * 1000 - quietAfterMs);
  // The archive worker waits, started, for the passes (archive.ts says why); an idle connection of its own answers
  // within DEPENDENCY_TIMEOUT_MS or is replaced.
  const archiver =
    config.ATTEMPTS_RETENTION === 0 ? undefined : createArchiver(config.DATABASE_URL, config.DEPENDENCY_TIMEOUT_MS);

  /** One pass; a no-op when retention is off, in a window's busy start, or while another instance holds the lock. */
  async function run(): Promise<void> {
    if (config.ATTEMPTS_RETENTION === 0 || !quiet()) return;
    // The lock's expiry on the real clock, which Redis keeps: taken before asking, so never later than Redis's.
    const lockExpires = Date.now() + LOCK_TTL_MS;
    const release = await locks
      .acquire('retention', retentionLockKey(config.REDIS_PREFIX), LOCK_TTL_MS)
      .catch(() => undefined);
    if (!release) return;
    try {
      await retireAll(lockExpires);
    } finally {
      await release().catch(() => {});
    }
  }

  /** Whether the business clock is in a sale window's quiet part, where passes may retire. */
  function quiet(): boolean {
    const now = clock.now();
    return now - ids.windowContaining(now).startsAt >= quietAfterMs;
  }

  async function retireAll(lockExpires: number): Promise<void> {
    const cutoff = clock.now() - config.ATTEMPTS_RETENTION;
    const due = (await data.partitions.list()).filter(
      (p) => p.schema === 'retired' || (p.endsAt !== null && p.endsAt.getTime() <= cutoff),
    );
    // An interrupted detach first: while one is pending, PostgreSQL detaches no other.
    due.sort((a, b) => Number(b.attachment === 'pending') - Number(a.attachment === 'pending'));
    for (const [i, p] of due.entries()) {
      // Many partitions can fall due at once (a retention turned on or shortened): each starts only in a quiet part,
      // and under a lock that outlasts its archive.
      if (!quiet() || Date.now() + LONGEST_ARCHIVE_MS + LOCK_SPARE_MS > lockExpires) {
        log.info({ left: due.length - i }, 'retention pass stopped; the next pass retires the partitions left');
        return;
      }
      if (await detach(p)) await archive(p);
    }
  }

  /** Takes the partition out of checkout_attempts, as far as it still is in it; false if a lock was not had in time. */
  async function detach(p: Partition): Promise<boolean> {
    try {
      if (p.schema === 'public') await data.partitions.retire(p, LOCK_TIMEOUT_MS);
      if (p.attachment !== 'detached') await data.partitions.detach(p, LOCK_TIMEOUT_MS);
      return true;
    } catch (err) {
      log.warn({ err, table: p.table }, 'could not detach an expired partition; retrying next pass');
      return false;
    }
  }

  async function archive(p: Partition): Promise<void> {
    try {
      const manifest = await writeArchive(archiver!, config.ARCHIVE_DIR, p, new Date(clock.now()));
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

  return {
    run,
    intervalMs,
    /** Stops the archive worker (on shutdown). */
    close: async () => archiver?.close(),
  };
}

export type Retention = ReturnType<typeof createRetention>;
