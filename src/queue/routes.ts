import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { AppError } from '../errors.js';
import type { Lane } from '../http/lane.js';
import { responses, retryAfter, USER_ID, USER_ID_RULE } from '../http/schemas.js';
import type { Queue } from './room.js';
import { TICKET_PATTERN } from './ticket.js';

const standing = {
  position: Type.Integer({ minimum: 0, description: 'people ahead (an estimate in the pre-queue); 0 once admitted' }),
  admitted: Type.Boolean({ description: 'the ticket opens POST /checkout and POST /purchase now' }),
  eta_seconds: Type.Integer({ minimum: 0 }),
  sold_out: Type.Boolean(),
  stale: Type.Boolean({ description: 'Redis is unreachable: the answer comes from counters a few seconds old' }),
};

const OFF = 'the waiting room is off (`WAITING_ROOM=off`): the answer of an unknown path';

/**
 * The waiting room's routes, and its timer tied to the app's life. They are
 * registered whether the room is on or off, so the OpenAPI document always
 * describes them; off, they answer 404 NOT_FOUND as an unknown path does
 * (before validation: a malformed request gets the same 404).
 */
export function queueRoutes(app: FastifyInstance, queue: Queue | undefined, lane?: Lane) {
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  const off = queue
    ? undefined
    : async (request: FastifyRequest) => {
        throw new AppError('NOT_FOUND', `${request.method} ${request.url.split('?')[0]!}`);
      };
  typed.post('/queue/join', {
    config: { name: 'queue_join' },
    preValidation: off,
    schema: {
      summary: 'Take a place in the waiting room of the sale (the same place on every join of that user)',
      querystring: Type.Object({ user_id: Type.String({ pattern: USER_ID, description: USER_ID_RULE }) }),
      response: responses(
        {
          200: Type.Object(
            { ticket: Type.String(), sale_id: Type.String(), ...standing },
            { description: 'The signed ticket and where it stands' },
          ),
        },
        {
          INVALID_REQUEST: '`user_id` is missing or malformed',
          SOLD_OUT: 'every item of the sale is taken',
          TICKET_INVALID: "the user's place was admitted and its `ADMISSION_TTL` has passed",
          RATE_LIMITED: 'too many joins from this client address',
          UNAVAILABLE: 'Redis is unavailable',
          NOT_FOUND: OFF,
        },
      ),
    },
    handler: async (request) => {
      const { body } = await queue!.join({ userId: request.query.user_id, ip: request.ip });
      return body;
    },
  });

  typed.get('/queue/status', {
    config: { name: 'queue_status' },
    preValidation: off,
    schema: {
      summary: "Where a ticket stands; answered from the instance's counters, without I/O",
      querystring: Type.Object({
        ticket: Type.String({ pattern: TICKET_PATTERN, description: 'must be a ticket from POST /queue/join' }),
      }),
      response: responses(
        {
          200: {
            description: 'The standing; `ticket` is the ticket to use from now on (re-signed after a secret rotation)',
            headers: retryAfter,
            ...Type.Object({ ticket: Type.String(), ...standing }),
          },
        },
        {
          INVALID_REQUEST: '`ticket` is missing or malformed',
          TICKET_INVALID: 'the ticket is forged, of another sale, or its admission expired',
          UNAVAILABLE: 'Redis has been unreachable for longer than `WAITING_ROOM_STALE_SECONDS`',
          NOT_FOUND: OFF,
        },
      ),
    },
    handler: async (request, reply) => {
      const { body, retryAfter: seconds } = queue!.status(request.query.ticket);
      void reply.header('retry-after', String(seconds));
      return body;
    },
  });

  if (!queue) return;
  app.decorateRequest('admittedTicket', undefined); // set by the purchase guard (room.ts)
  // The crowd's joins and polls, on the hot lane (http/lane.ts).
  lane?.add('/queue/join', {
    method: 'POST',
    name: 'queue_join',
    params: { user_id: new RegExp(USER_ID) },
    ready: () => true,
    answer: async (query, ip) => ({ outcome: 'OK', body: (await queue.join({ userId: query.user_id!, ip })).body }),
  });
  lane?.add('/queue/status', {
    method: 'GET',
    name: 'queue_status',
    params: { ticket: new RegExp(TICKET_PATTERN) },
    ready: () => true,
    answer: (query) => {
      const { body, retryAfter: seconds } = queue.status(query.ticket!);
      return { outcome: 'OK', body, headers: { 'retry-after': String(seconds) } };
    },
  });
  app.addHook('onReady', async () => queue.admission.start());
  app.addHook('onClose', async () => queue.admission.stop());
}
