import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import type { Ids } from '../sale/ids.js';
import { errorSchema } from '../http/errors.js';
import { USER_ID, USER_ID_RULE } from '../http/schemas.js';
import type { Checkout } from './checkout.js';

export function checkoutRoutes(app: FastifyInstance, deps: { ids: Ids; checkout: Checkout }) {
  app.withTypeProvider<TypeBoxTypeProvider>().post('/checkout', {
    config: { name: 'checkout' },
    schema: {
      summary: 'Get the code to buy an item (the same code on every checkout of that user and item)',
      querystring: Type.Object({
        user_id: Type.String({ pattern: USER_ID, description: USER_ID_RULE }),
        id: Type.String({
          pattern: deps.ids.patterns.itemId,
          maxLength: 32,
          description: 'must be an item id of the active sale, such as 2026112416-00042',
        }),
      }),
      response: {
        200: Type.Object({
          code: Type.String(),
          sale_id: Type.String(),
          item_id: Type.String(),
          user_id: Type.String(),
          expires_at: Type.String({ format: 'date-time' }),
        }),
        '4xx': errorSchema,
        '5xx': errorSchema,
      },
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
