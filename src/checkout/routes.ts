import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import type { Ids } from '../sale/ids.js';
import { responses, USER_ID, USER_ID_RULE } from '../http/schemas.js';
import { guardErrors, ticketHeaders, ticketQuery } from '../queue/schemas.js';
import type { Checkout } from './checkout.js';

export function checkoutRoutes(
  app: FastifyInstance,
  deps: { ids: Ids; checkout: Checkout; admission?: preHandlerAsyncHookHandler },
) {
  app.withTypeProvider<TypeBoxTypeProvider>().post('/checkout', {
    config: { name: 'checkout' },
    preHandler: deps.admission, // the waiting room's ticket check, when it is on
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
        },
      ),
    },
    handler: async (request) => {
      const result = await deps.checkout.checkout({
        userId: request.query.user_id,
        itemId: request.query.id,
        ip: request.ip,
      });
      request.outcome = 'OK';
      return result;
    },
  });
}
