/**
 * Group commit: callers enqueue one row each and await its result; one flush
 * at a time writes everything queued as a single statement, and the next
 * flush starts as soon as the previous one returns. Under load, batches grow
 * by themselves; when idle, a lone row is written at once (measured: this
 * beats flushing on a timer, see docs/ARCHITECTURE.md).
 *
 * A caller waits at most `timeoutMs` (DEPENDENCY_TIMEOUT_MS), however long
 * the flush ahead of it takes: a frozen PostgreSQL must give a fast 503, not
 * a queue of requests each waiting out the statement before its own. A row
 * still queued at its deadline is dropped (never written); one already sent
 * may still commit, which is why a timed-out answer is 503 (outcome
 * unknown), and why every write is idempotent or repaired from PostgreSQL.
 */
import { unavailable } from '../errors.js';

export interface Batcher<Row, Result> {
  add(row: Row): Promise<Result>;
  drain(): Promise<void>;
}

export function createBatcher<Row, Result>(
  flush: (rows: Row[]) => Promise<Result[]>,
  { timeoutMs, maxBatch = 1000 }: { timeoutMs: number; maxBatch?: number },
): Batcher<Row, Result> {
  type Pending = { row: Row; deadline: number; resolve: (r: Result) => void; reject: (e: unknown) => void };
  const queue: Pending[] = [];
  const waiting = new Set<Pending>();
  let running: Promise<void> | undefined;
  let sweeper: NodeJS.Timeout | undefined;

  // One timer for every waiter (a timer per row would cost more than the row).
  function sweep() {
    const now = Date.now();
    for (const p of waiting) {
      if (p.deadline > now) continue;
      waiting.delete(p);
      const queued = queue.indexOf(p);
      if (queued >= 0) queue.splice(queued, 1);
      p.reject(unavailable('database'));
    }
    if (waiting.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }

  async function run(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      try {
        const results = await flush(batch.map((p) => p.row));
        batch.forEach((p, i) => waiting.delete(p) && p.resolve(results[i] as Result));
      } catch (err) {
        for (const p of batch) if (waiting.delete(p)) p.reject(err);
      }
    }
    running = undefined;
  }

  return {
    add(row) {
      return new Promise<Result>((resolve, reject) => {
        const p = { row, deadline: Date.now() + timeoutMs, resolve, reject };
        queue.push(p);
        waiting.add(p);
        sweeper ??= setInterval(sweep, Math.max(10, timeoutMs / 10)).unref();
        // Start on the next turn so rows enqueued in this one share the batch.
        running ??= new Promise<void>((done) => setImmediate(done)).then(run);
      });
    },
    async drain() {
      while (running) await running;
    },
  };
}
