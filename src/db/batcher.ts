/**
 * Group commit: callers enqueue one row each and await its result; one flush
 * at a time writes everything queued as a single statement, and the next
 * flush starts as soon as the previous one returns. Under load, batches grow
 * by themselves; when idle, a lone row is written at once (measured: this
 * beats flushing on a timer, see docs/ARCHITECTURE.md).
 */
export function createBatcher<Row, Result>(
  flush: (rows: Row[]) => Promise<Result[]>,
  maxBatch = 1000,
): { add(row: Row): Promise<Result>; drain(): Promise<void> } {
  type Pending = { row: Row; resolve: (r: Result) => void; reject: (e: unknown) => void };
  const queue: Pending[] = [];
  let running: Promise<void> | undefined;

  async function run(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      try {
        const results = await flush(batch.map((p) => p.row));
        batch.forEach((p, i) => p.resolve(results[i] as Result));
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    running = undefined;
  }

  return {
    add(row) {
      return new Promise<Result>((resolve, reject) => {
        queue.push({ row, resolve, reject });
        // Start on the next turn so rows enqueued in this one share the batch.
        running ??= new Promise<void>((done) => setImmediate(done)).then(run);
      });
    },
    async drain() {
      while (running) await running;
    },
  };
}
