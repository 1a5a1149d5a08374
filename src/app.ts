/**
 * Builds the service from parsed config: infrastructure clients are created
 * here, once, and closed here (onClose). Nothing in this file listens, reads
 * the environment or exits; server.ts owns the process.
 */
import { METHODS } from 'node:http';

import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import { pino, type Logger } from 'pino';

import { createCheckout } from './checkout/checkout.js';
import { checkoutRoutes } from './checkout/routes.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { attemptsTable } from './db/attempts.js';
import { createDb } from './db/db.js';
import { purchasesTable } from './db/purchases.js';
import { salesTables } from './db/sales.js';
import { AppError } from './errors.js';
import { healthRoutes } from './health/routes.js';
import {
  clientErrorHandler,
  frameworkErrors,
  refuseConnect,
  registerErrorHandling,
  requireHost,
  sendError,
} from './http/errors.js';
import { instrument } from './http/instrument.js';
import { openapi } from './http/openapi.js';
import type { Infra } from './infra.js';
import { createMetrics } from './metrics/metrics.js';
import { metricsRoutes } from './metrics/routes.js';
import { createPurchase } from './purchase/purchase.js';
import { purchaseRoutes } from './purchase/routes.js';
import { createLocks } from './redis/lock.js';
import { createRedis } from './redis/redis.js';
import { createIds } from './sale/ids.js';
import { saleRoutes } from './sale/routes.js';
import { createReconciler } from './sale/reconciler.js';
import { createSales } from './sale/sales.js';

export interface AppOptions {
  config: Config;
  clock?: Clock;
  logger?: Logger;
}

/** Logs a failing dependency once when it fails and once when it recovers, not on every retry. */
function outageLogger(log: Logger, what: string, where: string) {
  let down = false;
  return {
    failed(err: Error) {
      if (!down) log.error({ err: err.message }, `${what} unreachable at ${where}, retrying`);
      down = true;
    },
    recovered() {
      if (down) log.info(`${what} reachable again at ${where}`);
      down = false;
    },
  };
}

/** "host:port/db" of a URL, without credentials, for log lines. */
export const describeUrl = (url: string) => {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '(default port)'}${u.pathname === '/' ? '' : u.pathname}`;
};

export async function buildApp({ config, clock = systemClock, logger }: AppOptions) {
  const log = logger ?? pino({ level: config.LOG_LEVEL });
  const metrics = createMetrics();
  const db = createDb(config, metrics);
  const data = {
    sales: salesTables(db),
    purchases: purchasesTable(db, config.DEPENDENCY_TIMEOUT_MS),
    attempts: attemptsTable(db, config.DEPENDENCY_TIMEOUT_MS),
  };
  const redisOutage = outageLogger(log, 'Redis', describeUrl(config.REDIS_URL));
  const redis = createRedis(config, metrics, (err) => redisOutage.failed(err));
  redis.events.on('ready', () => redisOutage.recovered());
  const locks = createLocks(redis, metrics);
  const ids = createIds(config.SALE_DURATION, config.SALE_ITEMS);
  const infra: Infra = { config, clock, log, metrics, db, data, redis, locks, ids };
  const sales = createSales(infra);
  const checkout = createCheckout({ ...infra, sales });
  const purchase = createPurchase({ ...infra, sales });
  const reconciler = createReconciler(infra);

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger, // pino's Logger is wider than Fastify's logger type
    // Per-request log lines cost more than the request at 15k/s; metrics count requests.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024, // no route takes a body
    // A slow client must not hold a connection, or a SIGTERM drain, for ever.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: 1000, // how often those timeouts are enforced (Node's default: 30 s)
      requireHostHeader: false, // checked by requireHost, to answer in the error shape
    },
    clientErrorHandler,
    frameworkErrors,
    // The client address behind a load balancer (per-IP rate limit): only from listed proxies.
    trustProxy: config.TRUST_PROXY.length > 0 ? config.TRUST_PROXY : false,
    // While draining, requests already on open connections are served, not refused;
    // instrument() closes those connections as they go idle.
    return503OnClosing: false,
  });
  await openapi(app);
  registerErrorHandling(app);
  const requests = instrument(app, metrics, config.MAX_IN_FLIGHT);
  app.addHook('onRequest', requireHost);
  app.server.on('connect', refuseConnect);
  // No route takes a body: one sent anyway is read (so an oversized one gets
  // 413) and ignored, whatever its Content-Type, so `curl -d ''` works too.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) => done(null, undefined));
  // Every method Node's parser accepts (but CONNECT, refused above) is routed,
  // so a known path answers 405 to any of them. QUERY is made bodyless: Fastify
  // would otherwise refuse it without a Content-Type before it could get a 405.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method);
  }
  app.addHttpMethod('QUERY', { overrideExisting: true });
  // A known path with the wrong method answers 405, not 404: remember each path's methods.
  const allowed = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // A plugin's index ('/docs' under that prefix) is also served at '/docs/', which Fastify does not report.
    const twin = route.routePath === '' && route.prefixTrailingSlash !== 'no-slash';
    for (const url of twin ? [route.url, `${route.url}/`] : [route.url]) {
      for (const m of methods) allowed.set(url, (allowed.get(url) ?? new Set()).add(m));
    }
  });

  checkoutRoutes(app, { ids, checkout });
  purchaseRoutes(app, { ids, purchase });
  saleRoutes(app, { ids, sales });
  healthRoutes(app, { db, redis, inFlight: requests.inFlight, timeoutMs: config.DEPENDENCY_TIMEOUT_MS });
  metricsRoutes(app, metrics);

  await app.after();
  for (const [url, registered] of [...allowed]) {
    const methods = [...registered]; // a copy: the 405 route below is reported to onRoute too
    app.route({
      method: app.supportedMethods.filter((m) => !methods.includes(m)),
      url,
      config: { name: 'method_not_allowed' },
      schema: { hide: true },
      handler: (request, reply) =>
        sendError(reply.header('allow', methods.join(', ')), new AppError('METHOD_NOT_ALLOWED', request.method)),
    });
  }

  // Background work: the sale scheduler, and the reconciler. Each reschedules
  // itself after it finishes, so a slow pass never overlaps the next.
  const timers = new Set<NodeJS.Timeout>();
  let running = true;
  const every = (ms: number, work: () => Promise<unknown>) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      work().finally(() => running && every(ms, work));
    }, ms);
    timers.add(timer);
  };
  const tick = () => sales.tick().catch((err: unknown) => log.warn({ err }, 'could not prepare the sale yet'));

  app.addHook('onReady', async () => {
    redis.connect().catch(() => {}); // resolves once connected; retries by itself until then
    await new Promise((resolve) => {
      const wait = setTimeout(resolve, config.DEPENDENCY_TIMEOUT_MS);
      redis.events.once('ready', () => resolve(clearTimeout(wait)));
    });
    if (redis.isReady()) await checkEvictionPolicy(redis, config, log);
    await tick();
    every(sales.tickIntervalMs, tick);
    every(config.RECONCILE_INTERVAL_MS, reconciler.run);
  });
  app.addHook('onClose', async () => {
    running = false;
    for (const timer of timers) clearTimeout(timer);
    await Promise.all([data.attempts.drain(), data.purchases.drain()]);
    await redis.close().catch(() => {});
    await db.close();
  });

  app.decorate('deps', { ...infra, sales, checkout, purchase, reconciler });
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The service's parts, for tests and tools that drive them directly. */
    deps: Deps;
  }
}

export interface Deps extends Infra {
  sales: ReturnType<typeof createSales>;
  checkout: ReturnType<typeof createCheckout>;
  purchase: ReturnType<typeof createPurchase>;
  reconciler: ReturnType<typeof createReconciler>;
}

/**
 * Redis holds authoritative counters (sold items, user slots, codes) between
 * rebuilds: an eviction policy that may drop keys would silently lose them.
 * REDIS_EVICTION_POLICY_CHECK decides whether that only warns or stops start-up.
 */
async function checkEvictionPolicy(redis: ReturnType<typeof createRedis>, config: Config, log: Logger) {
  let policy: string | undefined;
  try {
    const reply = await redis.command<string[]>('config', ['CONFIG', 'GET', 'maxmemory-policy']);
    policy = reply[1];
  } catch {
    log.warn('could not read Redis maxmemory-policy (CONFIG is disabled?); make sure it is noeviction');
    return;
  }
  if (policy === 'noeviction') return;
  const message = `Redis maxmemory-policy is "${policy}": keys holding sold items and user slots may be evicted; set it to noeviction`;
  if (config.REDIS_EVICTION_POLICY_CHECK === 'refuse') throw new Error(message);
  log.warn(message);
}

export type App = Awaited<ReturnType<typeof buildApp>>;
