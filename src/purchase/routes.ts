import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { errorSchema } from '../http/errors.js';
import type { Ids } from '../sale/ids.js';
import type { Purchase } from './purchase.js';

export function purchaseRoutes(app: FastifyInstance, deps: { ids: Ids; purchase: Purchase }) {
  app.withTypeProvider<TypeBoxTypeProvider>().post('/purchase', {
    config: { name: 'purchase' },
    schema: {
      summary: 'Buy the item a checkout code names; repeating it replays the same answer',
      querystring: Type.Object({
        code: Type.String({
          pattern: deps.ids.patterns.code,
          maxLength: 64,
          description: 'must be a code returned by POST /checkout',
        }),
      }),
      response: {
        200: Type.Object({
          sale_id: Type.String(),
          item_id: Type.String(),
          user_id: Type.String(),
          item: Type.Object({ id: Type.String(), name: Type.String(), image_url: Type.String() }),
          purchased_at: Type.String({ format: 'date-time' }),
        }),
        '4xx': errorSchema,
        '5xx': errorSchema,
      },
    },
    handler: async (request) => {
      const { outcome, body } = await deps.purchase.purchase({ code: request.query.code, ip: request.ip });
      request.outcome = outcome === 'success' ? 'OK' : 'REPLAY';
      return body;
    },
  });
}
