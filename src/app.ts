/**
 * Builds the service from parsed config: infrastructure clients are created
 * here, once, and closed here (onClose). Nothing in this file listens, reads
 * the environment or exits; server.ts owns the process.
 */
import { pino, type Logger } from 'pino';

import { registerAdmin } from './admin/routes.js';
import { registerAuth } from './auth/buyer.js';
import { createCheckout } from './checkout/checkout.js';
import { checkoutRoutes } from './checkout/routes.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { attemptsTable } from './db/attempts.js';
import { createDb } from './db/db.js';
import { partitionsTable } from './db/partitions.js';
import { purchasesTable } from './db/purchases.js';
import { salesTables } from './db/sales.js';
import { eventRoutes } from './events/routes.js';
import { healthRoutes } from './health/routes.js';
import { createHttp } from './http/http.js';
import type { Infra } from './infra.js';
import { createMetrics } from './metrics/metrics.js';
import { metricsRoutes } from './metrics/routes.js';
import { createPurchase } from './purchase/purchase.js';
import { purchaseRoutes } from './purchase/routes.js';
import { createQueue } from './queue/room.js';
import { queueRoutes } from './queue/routes.js';
import { createLocks } from './redis/lock.js';
import { createRedis } from './redis/redis.js';
import { redisOutageLogger, redisReady } from './redis/startup.js';
import { createIds } from './sale/ids.js';
import { saleRoutes } from './sale/routes.js';
import { createReconciler } from './sale/reconciler.js';
import { createRetention } from './retention/retention.js';
import { createSales } from './sale/sales.js';
import { createSoldCache } from './sale/sold-cache.js';
import { createScheduler } from './scheduler.js';
import { webRoutes } from './web/routes.js';

export interface AppOptions {
  config: Config;
  clock?: Clock;
  logger?: Logger;
}

export async function buildApp({ config, clock = systemClock, logger }: AppOptions) {
  const log = logger ?? pino({ level: config.LOG_LEVEL });
  const metrics = createMetrics();
  const db = createDb(config, metrics, log);
  const partitions = partitionsTable(db, config);
  const data = {
    sales: salesTables(db),
    purchases: purchasesTable(db, config.DEPENDENCY_TIMEOUT_MS),
    attempts: attemptsTable(db, config.DEPENDENCY_TIMEOUT_MS, partitions),
    partitions,
  };
  const redisOutage = redisOutageLogger(log, config);
  const redis = createRedis(config, metrics, (err) => redisOutage.failed(err));
  redis.events.on('ready', () => redisOutage.recovered());
  const locks = createLocks(redis, metrics);
  const ids = createIds(config.SALE_DURATION, config.SALE_ITEMS);
  const infra: Infra = { config, clock, log, metrics, db, data, redis, locks, ids };
  const sales = createSales(infra);
  const soldCache = createSoldCache(infra);
  const checkout = createCheckout({ ...infra, sales, soldCache });
  const purchase = createPurchase({ ...infra, sales, soldCache });
  const reconciler = createReconciler(infra);
  const retention = createRetention(infra);
  const queue = config.WAITING_ROOM === 'on' ? createQueue(infra) : undefined;

  const { app, inFlight, lane, addMethodNotAllowed } = await createHttp({ config, log, metrics });
  // The hot lane (http/lane.ts) serves checkout and purchase in the default
  // modes; with AUTH=jwt or the waiting room on, their checks run as route hooks.
  const hot = config.AUTH === 'off' && !queue ? lane : undefined;

  registerAuth(app, infra); // AUTH=jwt: the buyer check checkout and purchase declare (docs/security.md)
  registerAdmin(app, infra); // the operator API and the kill switch's gates
  checkoutRoutes(app, { ids, checkout, admission: queue?.guard('checkout'), lane: hot });
  purchaseRoutes(app, { ids, purchase, admission: queue?.guard('purchase'), bought: queue?.bought, lane: hot });
  queueRoutes(app, queue, lane); // registered either way: off, they answer 404 (documented)
  saleRoutes(app, { ids, sales });
  healthRoutes(app, { db, redis, inFlight, timeoutMs: config.DEPENDENCY_TIMEOUT_MS });
  metricsRoutes(app, metrics);
  eventRoutes(app, { ...infra, sales, room: queue });
  await webRoutes(app);

  await app.after();
  addMethodNotAllowed();

  const scheduler = createScheduler({ config, log, sales, reconciler, retention });
  app.addHook('onReady', async () => {
    await redisReady(redis, config, log);
    const subscribed = soldCache.start();
    if (redis.isReady()) await subscribed.catch(() => {});
    await scheduler.start();
  });
  app.addHook('onClose', async () => {
    scheduler.stop();
    await retention.close();
    await Promise.all([data.attempts.drain(), data.purchases.drain()]);
    await soldCache.close().catch(() => {});
    await redis.close().catch(() => {});
    await db.close();
  });

  app.decorate('deps', { ...infra, sales, soldCache, checkout, purchase, reconciler, retention, queue });
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
  soldCache: ReturnType<typeof createSoldCache>;
  checkout: ReturnType<typeof createCheckout>;
  purchase: ReturnType<typeof createPurchase>;
  reconciler: ReturnType<typeof createReconciler>;
  retention: ReturnType<typeof createRetention>;
  /** The waiting room, when WAITING_ROOM=on. */
  queue: ReturnType<typeof createQueue> | undefined;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
