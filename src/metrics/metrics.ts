/**
 * Every metric the service exports, in one explicit registry. Names, labels and
 * buckets are the monitoring design's (shared/seeds/000_9e4bc4fece225d33.txt);
 * the additions (failure counters, replays, drift, shedding) are documented in
 * the README. Gauges that describe state are computed on scrape (collect()),
 * never refreshed by timers.
 */
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import client from 'prom-client';

import type { ErrorCode } from '../errors.js';
import { Histogram } from './histogram.js';

const { Counter, Gauge, Registry, collectDefaultMetrics } = client;

export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const DB_QUERY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const REDIS_COMMAND_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
export const REDIS_LOCK_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The failure reasons each endpoint can count: a fixed set, never free text. */
export const CHECKOUT_FAILURE_REASONS = [
  'INVALID_REQUEST',
  'ITEM_NOT_FOUND',
  'ITEM_SOLD',
  'USER_LIMIT_REACHED',
  'RATE_LIMITED',
  'NOT_ADMITTED', // the waiting room, when it is on
  'TICKET_INVALID',
  'PAYLOAD_TOO_LARGE',
  'UNAVAILABLE',
  'INTERNAL',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'SALE_PAUSED',
  'SALE_ENDED',
] as const satisfies readonly ErrorCode[];
export const PURCHASE_FAILURE_REASONS = [
  'INVALID_REQUEST',
  'CODE_NOT_FOUND',
  'ITEM_SOLD',
  'USER_LIMIT_REACHED',
  'SALE_ENDED',
  'RATE_LIMITED',
  'NOT_ADMITTED', // the waiting room, when it is on
  'TICKET_INVALID',
  'PAYLOAD_TOO_LARGE',
  'UNAVAILABLE',
  'INTERNAL',
  'UNAUTHENTICATED',
  'FORBIDDEN', // AUTH=jwt: the code is another user's
  'SALE_PAUSED',
] as const satisfies readonly ErrorCode[];

/** Why a buyer's request was refused by AUTH=jwt (src/auth): a fixed set, never the library's text. */
export const AUTH_REJECTION_REASONS = [
  'missing', // no Authorization: Bearer header
  'malformed', // not a compact JWS, or unreadable
  'algorithm', // alg outside AUTH_ALGORITHMS ("none", HS256 ...)
  'signature', // no key of ours signed it, or it was altered
  'unknown_key', // its kid is not in the key set, even after a refetch
  'expired',
  'not_yet_valid',
  'issuer',
  'audience',
  'claims', // sub or exp missing, or another claim invalid
  'subject', // sub is not a valid user id
  'user_mismatch', // user_id sent and not the token's sub (403)
  'code_owner', // purchase with a code checked out by another user than the token's sub (403)
  'keys_unavailable', // no key set could be fetched (503)
] as const;
export type AuthRejection = (typeof AUTH_REJECTION_REASONS)[number];
/** Operator API requests (src/admin), by action and result: both fixed sets. */
export const ADMIN_ACTIONS = ['list', 'sale', 'user', 'pause', 'resume', 'end'] as const;
export const ADMIN_RESULTS = ['ok', 'unauthenticated', 'forbidden', 'refused', 'error'] as const;
/** The waiting room's refusals counted by queue_rejections_total (error codes, a fixed set). */
export const QUEUE_REJECTION_REASONS = [
  'TICKET_INVALID',
  'NOT_ADMITTED',
  'SOLD_OUT',
  'RATE_LIMITED',
  'UNAVAILABLE',
] as const satisfies readonly ErrorCode[];
/** Join to admission: from seconds (a short queue) to an hour (the whole sale). */
export const QUEUE_WAIT_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];
/** What the waiting room reports on scrape. */
export interface QueueState {
  waiting: number;
  prequeue: number;
  nowServing: number;
  soldOut: boolean;
  leading: boolean;
  ageSeconds: number;
  targetRate: number;
  shedRatio: number;
  checkoutP99: number;
}

/**
 * prom-client's `labels()` checks and builds a label object on every call, and
 * its metrics hash that object on every observation (measured: most of the
 * instrumentation's 8% CPU share under load). Hot paths look a counter's
 * labelled child up here once per label set instead; the histograms are the
 * service's own (histogram.ts), whose `labels()` already does that.
 */
export function children<C>(metric: { labels(...values: string[]): C }): (...values: string[]) => C {
  const cache = new Map<string, C>();
  return (...values) => {
    const key = values.join('\u0000');
    let child = cache.get(key);
    if (!child) cache.set(key, (child = metric.labels(...values)));
    return child;
  };
}

/** One labelled child's increments, kept as a plain number until its counter is read. */
class Tally {
  n = 0;
  inc() {
    this.n++;
  }
}
/** Per counter of the registry: what adds its tallies to it (run by its `collect` hook). */
const flushes = new WeakMap<object, (() => void)[]>();

/**
 * A counter's children for the hot paths, as `children()`, but `inc()` adds to
 * a plain number and the counter takes the sums when it is read (a scrape, or
 * `get()`), from its `collect` hook: prom-client hashes the labels of every
 * increment, bound child or not, so a request's three or four counters cost
 * more than the number they add.
 */
export function tallies(counter: { labels(...values: string[]): { inc(n: number): void } }) {
  const flush = flushes.get(counter);
  if (!flush) throw new Error('tallies() needs a counter made by createMetrics');
  // One tally per label set, made and cached as children() caches prom-client's children.
  return children({
    labels(...values: string[]) {
      const child = counter.labels(...values);
      const tally = new Tally();
      flush.push(() => {
        if (tally.n === 0) return;
        child.inc(tally.n);
        tally.n = 0;
      });
      return tally;
    },
  });
}

/**
 * Gauges that describe another module's state, computed on scrape. This
 * module declares them (names and help in one place); each owner registers
 * the producer that sets them (`metrics.produce`). A gauge nobody produces
 * fails the scrape instead of exporting 0, and `unproduced()` names it.
 */
const STATE_GAUGES = {
  sale_items_total: 'Total number of items in sale',
  sale_items_sold: 'Number of items sold in sale',
  sale_items_configured: 'Items every sale should have (SALE_ITEMS)',
  db_up: 'Whether PostgreSQL answered a probe during this scrape (1) or not (0)',
  db_connections_active: 'Database connections in use',
  db_connections_idle: 'Idle database connections',
  db_connections_waiting: 'Queries waiting for a database connection',
  db_connections_max: 'Configured size of the database pool',
  redis_up: 'Whether Redis answered a PING during this scrape (1) or not (0)',
  http_requests_in_flight: 'Requests being served right now',
  // Database growth and retention (src/retention/retention.ts produces them).
  db_database_size_bytes: 'Size of the PostgreSQL database on disk',
  db_attempts_partitions: 'Partitions of checkout_attempts, attached or retired and waiting for their archive',
  db_attempts_oldest_partition_age_seconds: 'Time since the start of the oldest sale still held in checkout_attempts',
  db_attempts_retention_seconds: 'ATTEMPTS_RETENTION in seconds (0: attempts are kept for ever)',
  sse_clients: 'Live event streams open on this instance (GET /sales/active/events)',
} as const;
export type StateGauge = keyof typeof STATE_GAUGES;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const stateGauges = new Map<StateGauge, client.Gauge>();
  const producers = new Map<StateGauge, () => Promise<void>>();
  for (const [name, help] of Object.entries(STATE_GAUGES) as [StateGauge, string][]) {
    stateGauges.set(
      name,
      new Gauge({
        name,
        help,
        registers: [registry],
        async collect() {
          const produce = producers.get(name);
          if (!produce) throw new Error(`metric ${name} has no producer`);
          await produce();
        },
      }),
    );
  }
  /**
   * Registers the producer of some state gauges: it runs once per scrape for
   * all of them (gauges read together share one read), and must not throw.
   */
  function produce<const N extends readonly StateGauge[]>(
    names: N,
    set: (gauges: { [I in keyof N]: client.Gauge }) => void | Promise<void>,
  ) {
    let running: Promise<void> | undefined;
    const once = () =>
      (running ??= Promise.resolve(
        set(names.map((n) => stateGauges.get(n)!) as { [I in keyof N]: client.Gauge }),
      ).finally(() => setImmediate(() => (running = undefined))));
    for (const name of names) {
      if (producers.has(name)) throw new Error(`metric ${name} has two producers`);
      producers.set(name, once);
    }
  }

  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => {
    const adds: (() => void)[] = [];
    const made = new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const add of adds) add(); // the tallies of the hot paths (tallies())
      },
    });
    flushes.set(made, adds);
    return made;
  };
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]) => {
    const made = new Histogram<L>(name, help, labelNames, buckets);
    // The registry reads any metric through get(); its typings only name prom-client's own classes.
    registry.registerMetric(made as unknown as client.Metric);
    return made;
  };
  const gauge = (name: string, help: string, collect: (g: client.Gauge) => void | Promise<void>) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        return collect(this);
      },
    });

  // prom-client's default buckets are the Go client's DefBuckets, as the seed asks.
  const httpRequestDuration = histogram(
    'http_request_duration_seconds',
    'Duration of HTTP requests in seconds',
    ['handler', 'method', 'status_code'],
    HTTP_DURATION_BUCKETS,
  );
  const httpRequestsTotal = counter('http_requests_total', 'Total number of HTTP requests', [
    'handler',
    'method',
    'status_code',
  ]);

  const checkoutAttempts = counter('checkout_attempts_total', 'Total number of checkout attempts');
  const checkoutSuccess = counter('checkout_success_total', 'Total number of successful checkouts');
  const checkoutFailure = counter('checkout_failure_total', 'Checkout attempts that failed, by error code', ['reason']);
  const purchaseAttempts = counter('purchase_attempts_total', 'Total number of purchase attempts');
  const purchaseSuccess = counter('purchase_success_total', 'Total number of successful purchases');
  const purchaseFailure = counter('purchase_failure_total', 'Purchase attempts that failed, by error code', ['reason']);
  const purchaseReplays = counter(
    'purchase_replays_total',
    'Purchases answered again for a code that had already bought (idempotent replay)',
  );
  // Zero-initialise every reason so rate() works from the first failure on.
  for (const reason of CHECKOUT_FAILURE_REASONS) checkoutFailure.inc({ reason }, 0);
  for (const reason of PURCHASE_FAILURE_REASONS) purchaseFailure.inc({ reason }, 0);

  const dbQueryDuration = histogram(
    'db_query_duration_seconds',
    'Duration of database queries in seconds',
    ['query_type', 'table'],
    DB_QUERY_BUCKETS,
  );
  const dbQueryErrors = counter('db_query_errors_total', 'Database queries that failed', ['query_type', 'table']);
  const redisCommandDuration = histogram(
    'redis_command_duration_seconds',
    'Duration of Redis commands in seconds',
    ['command'],
    REDIS_COMMAND_BUCKETS,
  );
  const redisCommandErrors = counter('redis_command_errors_total', 'Redis commands that failed', ['command']);
  const redisLockAttempts = counter('redis_lock_attempts_total', 'Total number of distributed lock attempts', [
    'lock_type',
  ]);
  const redisLockSuccess = counter('redis_lock_success_total', 'Distributed locks acquired', ['lock_type']);
  const redisLockFailure = counter('redis_lock_failure_total', 'Distributed lock attempts that failed', [
    'lock_type',
    'reason',
  ]);
  const redisLockDuration = histogram(
    'redis_lock_duration_seconds',
    'Duration of lock hold time in seconds',
    ['lock_type'],
    REDIS_LOCK_BUCKETS,
  );

  const shedTotal = counter('http_requests_shed_total', 'Requests refused before any work, by why', ['reason']);
  const hotLaneRequests = counter(
    'http_hot_lane_requests_total',
    'Checkouts and purchases answered by the hot lane rather than their Fastify route (also counted in http_requests_total)',
    ['handler'],
  );
  const reconcileDrift = new Gauge({
    name: 'sale_reconcile_drift_items',
    help: 'Differences between Redis and PostgreSQL found by the last reconciliation of the active sale',
    labelNames: ['kind'],
    registers: [registry],
  });
  const reconcileRuns = counter('sale_reconcile_runs_total', 'Reconciliations of the active sale, by outcome', [
    'outcome',
  ]);
  // Only the instance holding the round's lock reconciles: this tells whose
  // drift gauge is current and whether anyone reconciles at all.
  const reconcileLastRun = new Gauge({
    name: 'sale_reconcile_last_run_timestamp_seconds',
    help: 'When this instance last completed a reconciliation (Unix time)',
    registers: [registry],
  });
  const saleCreation = histogram(
    'sale_creation_duration_seconds',
    'Time to create a sale with all its items',
    [],
    DB_QUERY_BUCKETS,
  );

  // Verified buyers and the operator API (src/auth, src/admin).
  const authRejections = counter('auth_rejections_total', 'Buyer requests refused by token verification, by why', [
    'reason',
  ]);
  for (const reason of AUTH_REJECTION_REASONS) authRejections.inc({ reason }, 0);
  const adminRequests = counter('admin_requests_total', 'Operator API requests, by action and result', [
    'action',
    'result',
  ]);
  // Database growth and retention. The per-table sizes are read by the same
  // producer as db_database_size_bytes, once per scrape for both.
  const dbTableSize = new Gauge({
    name: 'db_table_size_bytes',
    help: 'Size of each table with its indexes (partitions summed into their parent)',
    labelNames: ['table'],
    registers: [registry],
    async collect() {
      await producers.get('db_database_size_bytes')?.();
    },
  });
  const archiveRuns = counter('attempts_archive_runs_total', 'Retired partitions archived, by outcome', ['outcome']);
  for (const outcome of ['ok', 'failed']) archiveRuns.inc({ outcome }, 0);
  const archiveBytes = counter('attempts_archive_bytes_total', 'Bytes of compressed archives written');
  const rowsRetired = counter('attempts_rows_retired_total', 'checkout_attempts rows archived and dropped');
  // Live event streams (src/events): one broadcaster per instance.
  const sseEventsSent = counter('sse_events_sent_total', 'Events written to stream clients, by event', ['event']);
  const sseClientsDropped = counter('sse_clients_dropped_total', 'Streams ended by the service, by why', ['reason']);
  const sseBroadcastLag = histogram(
    'sse_broadcast_lag_seconds',
    "From the start of the broadcaster's read to its event written to every client",
    [],
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  for (const event of ['sale', 'sold', 'sold_out', 'rotated', 'queue', 'closing']) sseEventsSent.inc({ event }, 0);
  for (const reason of ['slow_client', 'shutdown']) sseClientsDropped.inc({ reason }, 0);
  // --- The waiting room (src/queue, docs/waiting-room.md). Counters stay 0
  // and gauges 0 while it is off. Its state gauges are computed on scrape from
  // the room's counters, which the room hands over with `queueState`.
  const QUEUE_ROUTES = ['join', 'status', 'checkout', 'purchase'] as const;
  const queueJoins = counter('queue_joins_total', 'Joins of the waiting room, by outcome (new place or again)', [
    'outcome',
  ]);
  const queuePolls = counter('queue_polls_total', 'Waiting-room status polls answered 200');
  const queueRejections = counter('queue_rejections_total', 'Waiting-room refusals, by route and error code', [
    'route',
    'reason',
  ]);
  for (const route of QUEUE_ROUTES) {
    for (const reason of QUEUE_REJECTION_REASONS) queueRejections.inc({ route, reason }, 0);
  }
  for (const outcome of ['new', 'again']) queueJoins.inc({ outcome }, 0);
  const queueAdmitted = counter(
    'queue_admitted_total',
    'People admitted by this instance while it held the admission lease (sum over instances: all admissions)',
  );
  const queueJoinToAdmission = histogram(
    'queue_join_to_admission_seconds',
    "Time from a person's join to their first admitted checkout on this instance",
    [],
    QUEUE_WAIT_BUCKETS,
  );
  let queueState: (() => QueueState) | undefined;
  const queueGauge = (name: string, help: string, pick: (s: QueueState) => number) =>
    gauge(name, help, (g) => {
      if (queueState) g.set(pick(queueState()));
    });
  queueGauge('queue_waiting', 'People waiting in the running sale (joined, not admitted yet)', (s) => s.waiting);
  queueGauge('queue_prequeue_size', "People in the next sale's pre-queue", (s) => s.prequeue);
  queueGauge(
    'queue_now_serving',
    'People admitted so far in the running sale (the admission counter)',
    (s) => s.nowServing,
  );
  queueGauge('queue_sold_out', "Whether the running sale is sold out by the room's counters (1) or not (0)", (s) =>
    Number(s.soldOut),
  );
  queueGauge('queue_admission_leader', 'Whether this instance holds the admission lease (1) or not (0)', (s) =>
    Number(s.leading),
  );
  queueGauge('queue_counters_age_seconds', "Age of this instance's copy of the room's counters", (s) => s.ageSeconds);
  queueGauge(
    'queue_admission_rate_target',
    'Admissions per second this instance would apply (the controller output)',
    (s) => s.targetRate,
  );
  queueGauge(
    'queue_controller_shed_ratio',
    "Adaptive admission input: share of this instance's requests shed in its last window",
    (s) => s.shedRatio,
  );
  queueGauge(
    'queue_controller_checkout_p99_seconds',
    'Adaptive admission input: checkout latency p99 in its last window',
    (s) => s.checkoutP99,
  );

  gauge('nodejs_heap_size_limit_bytes', 'The V8 heap size limit, for a memory-usage ratio', (g) =>
    g.set(getHeapStatistics().heap_size_limit),
  );
  // Node's saturation: prom-client's defaults carry event-loop lag, GC, heap and
  // active handles; utilisation is the one they lack.
  let lastElu = performance.eventLoopUtilization();
  gauge('nodejs_eventloop_utilization_ratio', 'Share of time the event loop was busy since the last scrape', (g) => {
    const now = performance.eventLoopUtilization();
    g.set(performance.eventLoopUtilization(now, lastElu).utilization);
    lastElu = now;
  });

  return {
    registry,
    produce,
    /** State gauges declared here that no owner produces (a test keeps this empty). */
    unproduced: () => [...stateGauges.keys()].filter((name) => !producers.has(name)),
    httpRequestDuration,
    httpRequestsTotal,
    checkoutAttempts,
    checkoutSuccess,
    checkoutFailure,
    purchaseAttempts,
    purchaseSuccess,
    purchaseFailure,
    purchaseReplays,
    dbQueryDuration,
    dbQueryErrors,
    redisCommandDuration,
    redisCommandErrors,
    redisLockAttempts,
    redisLockSuccess,
    redisLockFailure,
    redisLockDuration,
    shedTotal,
    hotLaneRequests,
    reconcileDrift,
    reconcileRuns,
    reconcileLastRun,
    saleCreation,
    authRejections,
    adminRequests,
    dbTableSize,
    archiveRuns,
    archiveBytes,
    rowsRetired,
    sseEventsSent,
    sseClientsDropped,
    sseBroadcastLag,
    queueJoins,
    queuePolls,
    queueRejections,
    queueAdmitted,
    queueJoinToAdmission,
    /** The waiting room hands over its state for the queue_* gauges (read on scrape). */
    queueState: (source: () => QueueState) => void (queueState = source),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
