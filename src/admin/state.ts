/**
 * The kill switch as every instance sees it. PostgreSQL holds each sale's
 * state (sale_controls); each instance reads the states of unfinished sales
 * every SALE_STATE_REFRESH_MS (≤ 500 ms) into a map in memory, so a pause
 * holds on every instance within a second, survives a Redis restart, and adds
 * no I/O to a request while no sale is paused. A failed read keeps the last
 * known states (logged once) rather than reopening a paused sale.
 *
 * The gates are route hooks (preHandler: after validation):
 * - checkout of an item of a paused sale: 503 SALE_PAUSED; of an ended one:
 *   410 SALE_ENDED. Either is a validated attempt, recorded with its outcome.
 * - purchase with a code of a paused sale: a code that already bought goes on
 *   to replay its purchase (200); any other: 503 SALE_PAUSED. Of an ended
 *   sale: the replay, or 410 SALE_ENDED for a code that never bought (as after
 *   the window), 404 for a code never issued.
 * A request already past its gate when the switch flips completes: nothing
 * in flight is lost.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { AdminTables, SaleState } from '../db/admin.js';
import { AppError } from '../errors.js';
import type { Infra } from '../infra.js';

/** Seconds a client is told to wait while a sale is paused. */
export const PAUSED_RETRY_AFTER_S = 5;

declare module 'fastify' {
  interface FastifyInstance {
    saleGate: { checkout: Gate; purchase: Gate; allOpen: () => boolean };
  }
}
type Gate = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** The route hooks checkout and purchase declare: `preHandler: saleOpen`. */
export function saleOpen(request: FastifyRequest, reply: FastifyReply) {
  const gate =
    request.routeOptions.config.name === 'purchase'
      ? request.server.saleGate.purchase
      : request.server.saleGate.checkout;
  return gate(request, reply);
}

export type SaleStates = ReturnType<typeof createSaleStates>;

export function createSaleStates(
  deps: Pick<Infra, 'config' | 'clock' | 'log' | 'data' | 'ids'> & { admin: AdminTables },
) {
  const { config, clock, log, data, ids, admin } = deps;
  let states = new Map<string, Exclude<SaleState, 'open'>>();
  let failing = false;
  // A read that began before a local change may return after it: it is dropped, not applied over the change.
  let changes = 0;

  async function refresh() {
    try {
      const before = changes;
      const read = await admin.unfinishedStates(clock.now());
      if (before === changes) states = read;
      if (failing) log.info('sale states readable again');
      failing = false;
    } catch (err) {
      if (!failing) log.error({ err }, 'could not read sale states; keeping the last known ones');
      failing = true;
    }
  }

  const checkout: Gate = async (request) => {
    if (states.size === 0) return;
    const { user_id: userId, id: itemId } = request.query as { user_id: string; id: string };
    const saleId = ids.parseItemId(itemId).saleId;
    const state = states.get(saleId);
    if (!state) return;
    const error =
      state === 'paused'
        ? new AppError('SALE_PAUSED', saleId, PAUSED_RETRY_AFTER_S)
        : new AppError('SALE_ENDED', saleId);
    await data.attempts.insert({ saleId, itemId, userId, outcome: error.code, code: null, at: clock.now() });
    throw error;
  };

  const purchase: Gate = async (request) => {
    if (states.size === 0) return;
    const { code } = request.query as { code: string };
    const saleId = ids.saleIdOfCode(code);
    const state = states.get(saleId);
    if (!state || (await data.purchases.findByCode(code))) return; // open, or a replay
    if (state === 'paused') throw new AppError('SALE_PAUSED', saleId, PAUSED_RETRY_AFTER_S);
    if (await data.attempts.findCode(saleId, code)) throw new AppError('SALE_ENDED', saleId);
    throw new AppError('CODE_NOT_FOUND');
  };

  return {
    refresh,
    /** Applies a change this instance just made, without waiting for the next read. */
    set(saleId: string, state: SaleState) {
      changes++;
      const next = new Map(states);
      if (state === 'open') next.delete(saleId);
      else next.set(saleId, state);
      states = next;
    },
    get: (saleId: string): SaleState => states.get(saleId) ?? 'open',
    /** The route hooks, and whether they can be skipped (no sale paused or ended): the hot lane's check. */
    gates: { checkout, purchase, allOpen: () => states.size === 0 },
    intervalMs: config.SALE_STATE_REFRESH_MS,
  };
}

/** Decorates the app with the gates and keeps the states fresh while it runs. */
export function registerSaleStates(app: FastifyInstance, states: SaleStates) {
  app.decorate('saleGate', states.gates);
  let timer: NodeJS.Timeout | undefined;
  let open = true;
  const loop = () => {
    timer = setTimeout(() => void states.refresh().finally(() => open && loop()), states.intervalMs);
  };
  app.addHook('onReady', async () => {
    await states.refresh();
    loop();
  });
  app.addHook('onClose', async () => {
    open = false;
    clearTimeout(timer);
  });
}
