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
  /** A row and its caller; `settled` once answered, by its flush or by the sweep. */
  type Pending = {
    row: Row;
    deadline: number;
    settled: boolean;
    resolve: (r: Result) => void;
    reject: (e: unknown) => void;
  };
  // Arrays and a flag, not a Set of waiters: with a Set, which every request
  // entered and left, young collections promoted a third more of the
  // requests' objects under a stampede (docs/PERFORMANCE.md, "What the
  // scavenges promote").
  let queue: Pending[] = [];
  /** The batch being flushed (one at a time), for the sweep. */
  let flushing: Pending[] = [];
  let running: Promise<void> | undefined;
  let sweeper: NodeJS.Timeout | undefined;

  // One timer for every waiter (a timer per row would cost more than the row).
  function sweep() {
    const now = Date.now();
    const late = (p: Pending) => !p.settled && p.deadline <= now;
    for (const p of flushing) if (late(p)) settle(p).reject(unavailable('database'));
    if (queue.some(late)) {
      // Still queued: dropped, never written.
      for (const p of queue) if (late(p)) settle(p).reject(unavailable('database'));
      queue = queue.filter((p) => !p.settled);
    }
    if (queue.length === 0 && !running) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }

  function settle(p: Pending): Pending {
    p.settled = true;
    return p;
  }

  async function run(): Promise<void> {
    while (queue.length > 0) {
      let batch = queue;
      if (batch.length <= maxBatch) queue = [];
      else [batch, queue] = [batch.slice(0, maxBatch), batch.slice(maxBatch)];
      flushing = batch;
      try {
        const results = await flush(batch.map((p) => p.row));
        batch.forEach((p, i) => !p.settled && settle(p).resolve(results[i] as Result));
      } catch (err) {
        for (const p of batch) if (!p.settled) settle(p).reject(err);
      }
      flushing = [];
    }
    running = undefined;
  }

  return {
    add(row) {
      return new Promise<Result>((resolve, reject) => {
        queue.push({ row, deadline: Date.now() + timeoutMs, settled: false, resolve, reject });
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
