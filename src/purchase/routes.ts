import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { responses } from '../http/schemas.js';
import { saleOpen } from '../admin/state.js';
import { buyer } from '../auth/buyer.js';
import type { Lane } from '../http/lane.js';
import type { Ids } from '../sale/ids.js';
import { guardErrors, ticketHeaders, ticketQuery } from '../queue/schemas.js';
import type { Purchase } from './purchase.js';

export function purchaseRoutes(
  app: FastifyInstance,
  deps: {
    ids: Ids;
    purchase: Purchase;
    /** With the waiting room on: its ticket check, and what a successful purchase tells it. */
    admission?: preHandlerAsyncHookHandler;
    bought?: (request: FastifyRequest) => Promise<void>;
    lane?: Lane;
  },
) {
  // The outcome label and the body: a replay answers as the purchase it replays.
  const answer = async (code: string, ip: string, buyer: string | undefined) => {
    const { outcome, body } = await deps.purchase.purchase({ code, ip, buyer });
    return { outcome: outcome === 'success' ? 'OK' : 'REPLAY', body };
  };
  app.withTypeProvider<TypeBoxTypeProvider>().post('/purchase', {
    config: { name: 'purchase' },
    preValidation: buyer, // AUTH=jwt: a verified buyer, who must own the code (403 otherwise)
    // The operator's kill switch, then the waiting room's ticket check when it is on.
    preHandler: deps.admission ? [saleOpen, deps.admission] : saleOpen,
    schema: {
      summary: 'Buy the item a checkout code names; repeating it replays the same answer',
      headers: ticketHeaders,
      querystring: Type.Object({
        code: Type.String({
          pattern: deps.ids.patterns.code,
          maxLength: 64,
          description: 'must be a code returned by POST /checkout',
        }),
        ...ticketQuery,
      }),
      response: responses(
        {
          200: Type.Object(
            {
              sale_id: Type.String(),
              item_id: Type.String(),
              user_id: Type.String(),
              item: Type.Object({ id: Type.String(), name: Type.String(), image_url: Type.String() }),
              purchased_at: Type.String({ format: 'date-time' }),
            },
            { description: 'The purchase, durable in PostgreSQL; a repeat with the same code answers the same' },
          ),
        },
        {
          INVALID_REQUEST: '`code` is missing or malformed',
          CODE_NOT_FOUND: 'no checkout issued this code',
          ITEM_SOLD: 'the item was sold to someone else',
          USER_LIMIT_REACHED: 'the user already bought `USER_LIMIT` items of this sale',
          SALE_ENDED:
            "the code's sale has ended (its window passed, or an operator ended it) and the code bought nothing",
          UNAUTHENTICATED: 'with `AUTH=jwt`: no bearer token, or one that does not verify',
          FORBIDDEN: "with `AUTH=jwt`: the code was checked out by another user than the token's `sub`",
          SALE_PAUSED: 'an operator paused the sale and this code has not bought',
          ...guardErrors,
          RATE_LIMITED: 'too many purchases with this code or from this client address',
          UNAVAILABLE:
            'Redis or PostgreSQL is unavailable, the sale state is being rebuilt, or another purchase with this code is still in progress',
        },
      ),
    },
    handler: async (request) => {
      const { outcome, body } = await answer(request.query.code, request.ip, request.buyer);
      request.outcome = outcome;
      // The buyer leaves the room's stock bound. Not awaited: the purchase is
      // durable already, and the bookkeeping logs its own failure.
      if (outcome === 'OK') void deps.bought?.(request);
      return body;
    },
  });
  deps.lane?.add('/purchase', {
    method: 'POST',
    name: 'purchase',
    params: { code: new RegExp(deps.ids.patterns.code) },
    ready: app.saleGate.allOpen,
    answer: (query, ip) => answer(query.code!, ip, undefined),
  });
}
