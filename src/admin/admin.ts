/**
 * The operator API's use cases: views of a sale for a person at a console,
 * and the kill switch (pause, resume, end), each change written with its audit
 * row in one transaction and applied to this instance's gate at once (the
 * others read it within SALE_STATE_REFRESH_MS).
 */
import type { AdminTables, SaleState, SaleSummaryRow } from '../db/admin.js';
import { AppError } from '../errors.js';
import type { Infra } from '../infra.js';
import type { SaleStates } from './state.js';

/** Who asked, from where: what the audit trail records besides the action. */
export interface Operator {
  actor: string;
  address: string;
}
export type Action = 'pause' | 'resume' | 'end';
const TARGET: Record<Action, SaleState> = { pause: 'paused', resume: 'open', end: 'ended' };
const TOP_USERS = 20;
const USER_ATTEMPTS = 1000;

export type AdminDeps = Pick<Infra, 'clock' | 'log' | 'ids'> & { admin: AdminTables; states: SaleStates };

export function createAdmin(deps: AdminDeps) {
  const { clock, log, ids, admin, states } = deps;
  const iso = (d: Date) => d.toISOString();

  function summary(row: SaleSummaryRow) {
    const now = clock.now();
    const state =
      row.state === 'ended' || now >= row.ends_at.getTime()
        ? 'ended'
        : row.state === 'paused'
          ? 'paused'
          : now < row.starts_at.getTime()
            ? 'upcoming'
            : 'open';
    return {
      id: row.id,
      started_at: iso(row.starts_at),
      ends_at: iso(row.ends_at),
      state,
      total_items: row.total_items,
      items_sold: Number(row.sold),
      buyers: Number(row.buyers),
      attempts: Object.fromEntries(Object.entries(row.attempts).map(([k, v]) => [k, Number(v)])),
    };
  }

  async function existing(saleId: string) {
    const row = ids.windowOfSale(saleId) && (await admin.saleSummary(saleId));
    if (!row) throw new AppError('SALE_NOT_FOUND', saleId);
    return row;
  }

  return {
    async sales(limit: number) {
      return { sales: (await admin.listSales(clock.now(), limit)).map(summary) };
    },

    async sale(saleId: string) {
      const row = await existing(saleId);
      const [timeline, top] = await Promise.all([admin.timeline(saleId), admin.topUsers(saleId, TOP_USERS)]);
      return {
        ...summary(row),
        timeline: timeline.map((t) => ({
          minute: iso(t.minute),
          attempts: Number(t.attempts),
          codes: Number(t.codes),
          purchases: Number(t.purchases),
        })),
        top_users: top.map((u) => ({
          user_id: u.user_id,
          attempts: Number(u.attempts),
          codes: Number(u.codes),
          purchases: Number(u.purchases),
        })),
      };
    },

    async user(saleId: string, userId: string) {
      await existing(saleId);
      const { attempts, purchases } = await admin.userInSale(saleId, userId, USER_ATTEMPTS);
      return {
        sale_id: saleId,
        user_id: userId,
        attempts: attempts.map((a) => ({
          item_id: a.item_id,
          outcome: a.outcome,
          code: a.code,
          attempted_at: iso(a.attempted_at),
        })),
        purchases: purchases.map((p) => ({ item_id: p.item_id, code: p.code, purchased_at: iso(p.purchased_at) })),
      };
    },

    /** Pause, resume or end a sale; an ended one (by the switch or its window) stays ended: 410. */
    async change(saleId: string, action: Action, who: Operator) {
      const row = await existing(saleId);
      const audit = { ...who, action, saleId, result: 'OK', at: clock.now() };
      if (audit.at >= row.ends_at.getTime()) {
        await admin.audit({ ...audit, result: 'SALE_ENDED' });
        throw new AppError('SALE_ENDED', saleId);
      }
      const state = await admin.setState(saleId, TARGET[action], audit);
      states.set(saleId, state);
      log.info({ actor: who.actor, address: who.address, action, sale: saleId, state }, 'operator changed a sale');
      if (state !== TARGET[action]) throw new AppError('SALE_ENDED', saleId);
      return { sale_id: saleId, state };
    },

    /** Records an authenticated read (or its refusal) in the audit trail. */
    audited: (entry: Parameters<AdminTables['audit']>[0]) => admin.audit(entry),
  };
}

export type Admin = ReturnType<typeof createAdmin>;
