/**
 * The admission controller: one timer per instance, every REFRESH_MS. Each
 * tick sends one admission step (only the lease holder's advances: see
 * queue-advance-7.lua) and reads the room's counters for the running sale and
 * the one whose pre-queue is open, pipelined in one round trip. Status polls
 * and the checkout guard answer from these counters only, so a poll costs no
 * I/O and polls scale with instances.
 */
import type { Infra } from '../infra.js';
import { queueKeys } from '../redis/keys.js';
import type { QueueCounters } from '../redis/scripts.js';
import type { SaleWindow } from '../sale/ids.js';
import { createController, createSignals, WINDOW_MS } from './controller.js';

/** How often counters are refreshed (the bound: at most every 250 ms). */
export const REFRESH_MS = 250;
/** The advancing instance's lease: another takes over within this after it dies. */
export const LEASE_MS = 2000;
/** A stalled or new advancer admits at most this much time's worth at once. */
const CATCH_UP_MS = 1000;

export type AdmissionDeps = Pick<Infra, 'config' | 'clock' | 'redis' | 'ids' | 'log' | 'locks' | 'metrics'>;

export function createAdmission(deps: AdmissionDeps) {
  const { config, clock, redis, ids, log, metrics } = deps;
  const token = deps.locks.newToken();
  const adaptive = config.ADMISSION_MODE === 'adaptive';
  const controller = createController({
    base: config.ADMIT_PER_SEC,
    p99TargetSeconds: config.ADMISSION_P99_TARGET_MS / 1000,
  });
  const signals = createSignals(metrics);
  /** Business time of the controller's last decision. */
  let decidedAt = -Infinity;
  let counters = new Map<string, QueueCounters>();
  /** Real time (Date.now) of the last successful read: how stale the counters are. */
  let refreshedAt = -Infinity;
  let leading = false;
  let failing = false;
  /**
   * Ticks sent, and the latest whose counters are in use: a reply that comes
   * late (a script's first EVALSHA answered NOSCRIPT and was sent again as
   * EVAL) holds a read older than a later tick's and must not replace it.
   */
  let sent = 0;
  let applied = 0;

  /** The running sale, and the next one while its pre-queue is open. */
  function salesAt(now: number): { current: SaleWindow; upcoming: SaleWindow | undefined } {
    const current = ids.windowContaining(now);
    const open = current.endsAt - now <= config.PREQUEUE_SECONDS * 1000;
    return { current, upcoming: open ? ids.windowContaining(current.endsAt) : undefined };
  }

  const expireAt = (sale: SaleWindow) => sale.endsAt + config.SALE_DURATION * 1000;

  /** One admission step and one read of the counters; failures keep the last counters (marked stale by age). */
  async function tick(): Promise<void> {
    if (!redis.isReady() && refreshedAt === -Infinity) return; // still connecting at start-up: nothing to report
    const now = clock.now();
    const seq = ++sent;
    const { current, upcoming } = salesAt(now);
    const sales = upcoming ? [current, upcoming] : [current];
    try {
      const [step, ...read] = await Promise.all([
        redis.scripts.queueAdvance({
          keys: queueKeys(config.REDIS_PREFIX, current.id),
          token,
          leaseMs: LEASE_MS,
          now,
          startsAt: current.startsAt,
          rate: adaptive ? controller.rate() : config.ADMIT_PER_SEC,
          items: config.SALE_ITEMS,
          stockFactor: config.ADMISSION_STOCK_FACTOR,
          ttlMs: config.ADMISSION_TTL * 1000,
          catchUpMs: CATCH_UP_MS,
          expireAt: expireAt(current),
        }),
        ...sales.map((s) => redis.scripts.queueRead(queueKeys(config.REDIS_PREFIX, s.id))),
      ]);
      leading = step.status === 'advanced';
      if (step.status === 'advanced') metrics.queueAdmitted.inc(step.admittedNow);
      if (seq > applied) {
        applied = seq;
        counters = new Map(sales.map((s, i) => [s.id, read[i]!]));
        if (adaptive) await steer(now, counters.get(current.id)!);
      }
      refreshedAt = Date.now();
      if (failing) log.info('waiting room counters refreshed again');
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err }, 'waiting room could not refresh its counters; answering from the last ones');
      failing = true;
    }
  }

  /** Adaptive mode: once a window, the leader decides the rate; the others follow the one it published. */
  async function steer(now: number, c: QueueCounters) {
    if (now - decidedAt < WINDOW_MS) return;
    decidedAt = now;
    const inputs = await signals();
    if (leading) controller.decide({ ...inputs, waiting: waitingIn(c) });
    else controller.follow(c.rate);
  }

  let timer: NodeJS.Timeout | undefined;
  let running = false;
  const schedule = (ms: number) => {
    timer = setTimeout(() => void tick().finally(() => running && schedule(REFRESH_MS)), ms);
  };

  return {
    tick,
    salesAt,
    expireAt,
    counters: (saleId: string) => counters.get(saleId),
    /** Milliseconds since the counters were last read from Redis. */
    age: () => Date.now() - refreshedAt,
    leading: () => leading,
    /** The rate this instance applies when it leads, and the controller's last inputs. */
    targetRate: () => (adaptive ? controller.rate() : config.ADMIT_PER_SEC),
    controllerInputs: () => controller.inputs(),
    /** Starts the timer (the first tick at once; until it succeeds, polls answer 503). */
    start() {
      running = true;
      schedule(0);
    },
    stop() {
      running = false;
      clearTimeout(timer);
    },
  };
}

export type Admission = ReturnType<typeof createAdmission>;

/** People who joined the running sale and are not admitted yet. */
export const waitingIn = (c: QueueCounters) => (c.started ? Math.max(0, c.pre + c.joinedAfterStart - c.admitted) : 0);
