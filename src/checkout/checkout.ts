/**
 * POST /checkout: one Lua round trip decides (sold? user full? get or create
 * the code), then the attempt and its outcome are group-committed to
 * PostgreSQL before the answer is sent, whatever the outcome.
 */
import { createBatcher } from '../db/batcher.js';
import { AppError, unavailable, type ErrorCode } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import type { Sales } from '../sale/sales.js';

export type CheckoutDeps = Pick<Infra, 'config' | 'db' | 'redis' | 'ids' | 'clock'> & { sales: Sales };

interface Attempt {
  saleId: string;
  itemId: string;
  userId: string;
  outcome: 'OK' | ErrorCode;
  code: string | null;
  at: number;
}

type Reply = [0, string] | [-1] | [1] | [2] | [3, number];

export function createCheckout(deps: CheckoutDeps) {
  const { config, db, redis, ids, sales, clock } = deps;

  const attempts = createBatcher<Attempt, undefined>(async (rows) => {
    await db.query(
      'insert',
      'checkout_attempts',
      `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
       SELECT s, i, u, o, c, to_timestamp(t / 1000.0)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[]) AS x(s, i, u, o, c, t)`,
      [
        rows.map((r) => r.saleId),
        rows.map((r) => r.itemId),
        rows.map((r) => r.userId),
        rows.map((r) => r.outcome),
        rows.map((r) => r.code),
        rows.map((r) => r.at),
      ],
    );
    return rows.map(() => undefined);
  });

  async function decide(saleId: string, index: number, userId: string, ip: string): Promise<Reply> {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const run = () =>
      redis.script<Reply>(
        'checkout',
        [keys.ready, keys.sold, keys.users, keys.codes, keys.owners, keys.userBucket(userId), keys.ipBucket(ip)],
        [
          userId,
          index,
          ids.newCode(saleId),
          config.USER_LIMIT,
          clock.now(),
          config.RATE_LIMIT_USER_PER_SEC,
          config.RATE_LIMIT_USER_BURST,
          config.RATE_LIMIT_IP_PER_SEC,
          config.RATE_LIMIT_IP_BURST,
        ],
      );
    const reply = await run();
    if (reply[0] !== -1) return reply;
    await sales.rebuild(saleId);
    return run();
  }

  return {
    async checkout(input: { userId: string; itemId: string; ip: string }) {
      const sale = await sales.active();
      const { saleId, index } = ids.parseItemId(input.itemId);
      let error: AppError | undefined;
      let code: string | null = null;
      if (saleId !== sale.id || index >= config.SALE_ITEMS) {
        error = new AppError('ITEM_NOT_FOUND', `${input.itemId} is not an item of the active sale`);
      } else {
        try {
          const reply = await decide(sale.id, index, input.userId, input.ip);
          if (reply[0] === 0) code = reply[1];
          else if (reply[0] === 1) error = new AppError('ITEM_SOLD', input.itemId);
          else if (reply[0] === 2) error = new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
          else if (reply[0] === 3) error = new AppError('RATE_LIMITED', '', Math.ceil(reply[1] / 1000));
          else error = unavailable('sale state');
        } catch (err) {
          // Redis down: still record the attempt (and its 503) if PostgreSQL is up.
          if (!(err instanceof AppError)) throw err;
          error = err;
        }
      }
      await attempts.add({
        saleId: sale.id,
        itemId: input.itemId,
        userId: input.userId,
        outcome: error ? error.code : 'OK',
        code,
        at: clock.now(),
      });
      if (error) throw error;
      return {
        code: code!,
        sale_id: sale.id,
        item_id: input.itemId,
        user_id: input.userId,
        expires_at: new Date(sale.endsAt).toISOString(),
      };
    },
    drain: () => attempts.drain(),
  };
}

export type Checkout = ReturnType<typeof createCheckout>;
