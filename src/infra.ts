/**
 * The infrastructure every part of the service is built from, created once in
 * app.ts. Each use case takes the slice it needs (`Pick<Infra, ...>`).
 */
import type { Logger } from 'pino';

import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Attempts } from './db/attempts.js';
import type { Db } from './db/db.js';
import type { Partitions } from './db/partitions.js';
import type { Purchases } from './db/purchases.js';
import type { SalesTables } from './db/sales.js';
import type { Metrics } from './metrics/metrics.js';
import type { Locks } from './redis/lock.js';
import type { Redis } from './redis/redis.js';
import type { Ids } from './sale/ids.js';

/** The data-access layer: one module per table (group), every statement in it. */
export interface Data {
  sales: SalesTables;
  purchases: Purchases;
  attempts: Attempts;
  partitions: Partitions;
}

export interface Infra {
  config: Config;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  db: Db;
  data: Data;
  redis: Redis;
  locks: Locks;
  ids: Ids;
}
