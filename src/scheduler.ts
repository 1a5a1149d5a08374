/**
 * Background work: the sale scheduler (prepares the next sale ahead of time),
 * the reconciler, and the retention of old attempts partitions. Each reschedules itself after it finishes, so a slow
 * pass never overlaps the next.
 */
import type { Logger } from 'pino';

import type { Config } from './config.js';
import type { Sales } from './sale/sales.js';

export function createScheduler(deps: {
  config: Config;
  log: Logger;
  sales: Pick<Sales, 'tick' | 'tickIntervalMs'>;
  reconciler: { run(): Promise<unknown> };
  retention: { run(): Promise<unknown>; intervalMs: number };
}) {
  const { config, log, sales, reconciler, retention } = deps;
  const timers = new Set<NodeJS.Timeout>();
  let running = true;
  const every = (ms: number, work: () => Promise<unknown>) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      work().finally(() => running && every(ms, work));
    }, ms);
    timers.add(timer);
  };
  const tick = () => sales.tick().catch((err: Error) => log.warn({ err }, 'could not prepare the sale yet'));

  return {
    /** Prepares the current sale once, then keeps both running. */
    async start() {
      await tick();
      every(sales.tickIntervalMs, tick);
      every(config.RECONCILE_INTERVAL_MS, reconciler.run);
      every(retention.intervalMs, () =>
        retention.run().catch((err: unknown) => log.warn({ err }, 'retention pass failed; retrying next interval')),
      );
    },
    stop() {
      running = false;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}
