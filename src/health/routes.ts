/**
 * GET /health: the seed's HealthData. Each dependency probe has its own short
 * timeout, so the answer never waits on a dead server. On Node, "goroutines"
 * counts active handles and requests (libuv resources) plus requests in flight.
 */
import { PerformanceObserver } from 'node:perf_hooks';

import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

import type { Db } from '../db/db.js';
import { errorBody, responses, retryAfter } from '../http/schemas.js';
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

const upOrDown = Type.Unsafe<'UP' | 'DOWN'>({ type: 'string', enum: ['UP', 'DOWN'] });
const HealthData = Type.Object({
  services_status: Type.Object({
    app: Type.Unsafe<'UP'>({ type: 'string', enum: ['UP'] }),
    database: upOrDown,
    redis: upOrDown,
  }),
  uptime: Type.String({ description: "since the process started, as Go writes a duration: '1h2m3.5s'" }),
  memory: Type.Object({
    alloc: Type.Integer({ description: 'heap used, bytes' }),
    total_alloc: Type.Integer({ description: 'heap allocated, bytes' }),
    sys: Type.Integer({ description: 'resident set size, bytes' }),
    num_gc: Type.Integer({ description: 'garbage collections since start' }),
  }),
  goroutines: Type.Integer({ description: 'active libuv handles and requests plus requests in flight' }),
});

const schema = {
  summary: 'Whether this instance and its dependencies are up (the seed HealthData)',
  response: {
    ...responses({ 200: { ...HealthData, description: 'Everything is up' } }, {}),
    503: {
      description:
        'PostgreSQL or Redis is down: the same body, `services_status` naming which. ' +
        'Or `UNAVAILABLE`: the service is overloaded (`MAX_IN_FLIGHT` requests in flight)',
      headers: retryAfter,
      anyOf: [HealthData, errorBody(['UNAVAILABLE'])],
    },
  },
};

export function healthRoutes(
  app: FastifyInstance,
  deps: { db: Db; redis: Redis; inFlight: () => number; timeoutMs: number },
) {
  const { db, redis, inFlight, timeoutMs } = deps;
  app.get('/health', {
    config: { name: 'health' },
    schema,
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
