/**
 * POST /checkout: one Lua round trip decides (sold? user full? get or create
 * the code), then the attempt and its outcome are group-committed to
 * PostgreSQL before the answer is sent, whatever the outcome.
 */
import { AppError, unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import { rateLimits, type CheckoutInput } from '../redis/scripts.js';
import type { Sales } from '../sale/sales.js';
import type { SoldCache, SoldItem } from '../sale/sold-cache.js';

export type CheckoutDeps = Pick<Infra, 'config' | 'data' | 'redis' | 'ids' | 'clock'> & {
  sales: Sales;
  soldCache: SoldCache;
};

export function createCheckout(deps: CheckoutDeps) {
  const { config, data, redis, ids, sales, clock, soldCache } = deps;
  const limits = rateLimits(config);

  /**
   * Redis's answer for this user and item: the code, or the refusal (returned,
   * not thrown: most of a stampede is refusals), loading the sale's state first if needed.
   */
  async function decide(saleId: string, index: number, userId: string, ip: string): Promise<string | AppError> {
    const input: CheckoutInput = {
      keys: saleKeys(config.REDIS_PREFIX, saleId),
      userId,
      index,
      ip,
      newCode: ids.newCode(saleId),
      userLimit: config.USER_LIMIT,
      now: clock.now(),
      limits,
    };
    let result = await redis.scripts.checkout(input);
    if (result.status === 'not_ready') {
      await sales.rebuild(saleId);
      result = await redis.scripts.checkout(input);
    }
    switch (result.status) {
      case 'ok':
        return result.code;
      case 'item_sold':
        return new AppError('ITEM_SOLD', ids.itemId(saleId, index));
      case 'user_full':
        return new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
      case 'rate_limited':
        return new AppError('RATE_LIMITED', '', Math.ceil(result.retryMs / 1000));
      case 'not_ready':
        return unavailable('sale state');
    }
  }

  return {
    async checkout(input: { userId: string; itemId: string; ip: string }) {
      const sale = sales.current() ?? (await sales.active());
      const { saleId, index } = ids.parseItemId(input.itemId);
      let decided: string | AppError;
      let sold: SoldItem | undefined;
      if (saleId !== sale.id || index >= config.SALE_ITEMS) {
        decided = new AppError('ITEM_NOT_FOUND', `${input.itemId} is not an item of the active sale`);
      } else if ((sold = soldCache.lookup(sale.id, index))) {
        // PostgreSQL confirmed this item sold: answered from memory, as the
        // script would (the buyer gets their code back), without Redis, so
        // without spending a rate-limit token either (src/sale/sold-cache.ts).
        decided = sold.userId === input.userId ? sold.code : new AppError('ITEM_SOLD', ids.itemId(sale.id, index));
      } else {
        // Redis down: the attempt is still recorded, with its 503, if PostgreSQL is up.
        decided = await decide(sale.id, index, input.userId, input.ip).catch((err: unknown) => {
          if (err instanceof AppError) return err;
          throw err;
        });
      }
      const error = decided instanceof AppError ? decided : undefined;
      const code = error ? null : (decided as string);
      await data.attempts.insert({
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
  };
}

export type Checkout = ReturnType<typeof createCheckout>;
