/**
 * GET /sales/active/events: Server-Sent Events from this instance's one
 * broadcaster. Streams have their own cap (MAX_STREAMS) and do not count
 * against MAX_IN_FLIGHT (instrument.ts skips routes marked `stream`): they are
 * long-lived, and would otherwise shed every other request. On SIGTERM
 * (Fastify's preClose) every stream ends with a `closing` event, so none holds
 * the drain, and EventSource reconnects, to another instance behind a balancer.
 */
import type { FastifyInstance } from 'fastify';

import { AppError } from '../errors.js';
import { responses } from '../http/schemas.js';
import type { Infra } from '../infra.js';
import type { Sales } from '../sale/sales.js';
import { createBroadcaster, type Broadcaster, type Room } from './broadcaster.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's event broadcaster, for tests and tools. */
    broadcaster: Broadcaster;
  }
}

export function eventRoutes(app: FastifyInstance, deps: Infra & { sales: Sales; room: Room | undefined }) {
  const broadcaster = createBroadcaster(deps);
  app.decorate('broadcaster', broadcaster);
  deps.metrics.produce(['sse_clients'], ([g]) => g.set(broadcaster.size()));
  app.addHook('onReady', async () => broadcaster.start());
  app.addHook('preClose', async () => broadcaster.close());

  app.get('/sales/active/events', {
    config: { name: 'sale_events', stream: true },
    schema: {
      // An answer that never ends cannot be probed the way test/openapi.test.ts
      // reads the others; the events are described in the README instead.
      hide: true,
      response: responses({}, { UNAVAILABLE: '`MAX_STREAMS` streams are open, or the instance is shutting down' }),
    },
    handler: (request, reply) => {
      if (!broadcaster.accepting()) throw new AppError('UNAVAILABLE', 'event streams (at MAX_STREAMS)', 1);
      reply.hijack();
      // A stream ends only with its connection, so it needs no chunked
      // framing (Node then answers `Connection: close`): each event is one
      // plain socket write, the same bytes for every stream.
      reply.raw.useChunkedEncodingByDefault = false;
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        // Proxies such as nginx would otherwise hold events back to buffer them.
        'x-accel-buffering': 'no',
      });
      const lastEventId = request.headers['last-event-id'];
      broadcaster.add(reply.raw, typeof lastEventId === 'string' ? lastEventId : undefined);
    },
  });
}
