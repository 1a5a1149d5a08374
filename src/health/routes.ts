/**
 * GET /health: the seed's HealthData. Each dependency probe has its own short
 * timeout, so the answer never waits on a dead server. On Node, "goroutines"
 * counts active handles and requests (libuv resources) plus requests in flight.
 */
import { PerformanceObserver } from 'node:perf_hooks';

import type { FastifyInstance } from 'fastify';

import type { Db } from '../db/db.js';
import type { Redis } from '../redis/redis.js';

const startedAt = Date.now();
let gcCount = 0;
new PerformanceObserver((list) => {
  gcCount += list.getEntries().length;
}).observe({ entryTypes: ['gc'] });

/** Go's time.Duration.String() shape, e.g. "1h2m3.5s", as the seed's uptime is. */
export function goDuration(ms: number): string {
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${Number(s.toFixed(3))}s`;
}

export function healthRoutes(
  app: FastifyInstance,
  deps: { db: Db; redis: Redis; inFlight: () => number; timeoutMs: number },
) {
  const { db, redis, inFlight, timeoutMs } = deps;
  app.get('/health', {
    config: { name: 'health' },
    handler: async (_request, reply) => {
      const [database, cache] = await Promise.all([db.ping(timeoutMs), redis.ping()]);
      const memory = process.memoryUsage();
      const body = {
        services_status: { app: 'UP', database: database ? 'UP' : 'DOWN', redis: cache ? 'UP' : 'DOWN' },
        uptime: goDuration(Date.now() - startedAt),
        memory: { alloc: memory.heapUsed, total_alloc: memory.heapTotal, sys: memory.rss, num_gc: gcCount },
        goroutines: process.getActiveResourcesInfo().length + inFlight(),
      };
      if (!(database && cache)) reply.code(503).header('retry-after', '1');
      return reply.send(body);
    },
  });
}
