import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { saleOpen } from '../admin/state.js';
import { buyer } from '../auth/buyer.js';
import type { Lane } from '../http/lane.js';
import type { Ids } from '../sale/ids.js';
import { responses, USER_ID, USER_ID_RULE } from '../http/schemas.js';
import { guardErrors, ticketHeaders, ticketQuery } from '../queue/schemas.js';
import type { Checkout } from './checkout.js';

export function checkoutRoutes(
  app: FastifyInstance,
  deps: { ids: Ids; checkout: Checkout; admission?: preHandlerAsyncHookHandler; lane?: Lane },
) {
  const answer = (userId: string, itemId: string, ip: string) => deps.checkout.checkout({ userId, itemId, ip });
  app.withTypeProvider<TypeBoxTypeProvider>().post('/checkout', {
    config: { name: 'checkout' },
    preValidation: buyer, // AUTH=jwt: the token's sub is the user
    // The operator's kill switch, then the waiting room's ticket check when it is on.
    preHandler: deps.admission ? [saleOpen, deps.admission] : saleOpen,
    schema: {
      summary: 'Get the code to buy an item (the same code on every checkout of that user and item)',
      headers: ticketHeaders,
      querystring: Type.Object({
        user_id: Type.String({ pattern: USER_ID, description: USER_ID_RULE }),
        id: Type.String({
          pattern: deps.ids.patterns.itemId,
          maxLength: 32,
          description: 'must be an item id of the active sale, such as 2026112416-00042',
        }),
        ...ticketQuery,
      }),
      response: responses(
        {
          200: Type.Object(
            {
              code: Type.String(),
              sale_id: Type.String(),
              item_id: Type.String(),
              user_id: Type.String(),
              expires_at: Type.String({ format: 'date-time', description: 'the end of the sale' }),
            },
            { description: "The user's code for this item, recorded with the attempt" },
          ),
        },
        {
          INVALID_REQUEST: '`user_id` or `id` is missing or malformed (`field` names it)',
          ITEM_NOT_FOUND: '`id` is not an item of the active sale',
          ITEM_SOLD: 'the item is already sold',
          USER_LIMIT_REACHED: 'the user already holds `USER_LIMIT` items of this sale',
          ...guardErrors,
          RATE_LIMITED: 'too many checkouts from this user or this client address',
          UNAVAILABLE: 'Redis or PostgreSQL is unavailable, or the sale state is being rebuilt',
          UNAUTHENTICATED: 'with `AUTH=jwt`: no bearer token, or one that does not verify',
          FORBIDDEN: "with `AUTH=jwt`: `user_id` is not the token's `sub`",
          SALE_PAUSED: 'an operator paused the sale',
          SALE_ENDED: 'an operator ended the sale early',
        },
      ),
    },
    handler: async (request) => {
      const result = await answer(request.query.user_id, request.query.id, request.ip);
      request.outcome = 'OK';
      return result;
    },
  });
  deps.lane?.add('/checkout', {
    method: 'POST',
    name: 'checkout',
    params: { user_id: new RegExp(USER_ID), id: new RegExp(deps.ids.patterns.itemId) },
    ready: app.saleGate.allOpen,
    answer: async (query, ip) => ({ outcome: 'OK', body: await answer(query.user_id!, query.id!, ip) }),
  });
}
