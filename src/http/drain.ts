/**
 * A SIGTERM drain that ends: requests in flight finish, but no client can hold
 * the process open. Node's server.close() stops the timer that enforces
 * requestTimeout/headersTimeout, so from the start of a drain the service
 * enforces its own deadline of REQUEST_TIMEOUT_MS over every connection left.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import type { FastifyInstance } from 'fastify';

import { AppError } from '../errors.js';
import { answerOnSocket } from './errors.js';
import type { Front } from './front.js';

/** The response a connection is serving or served last, set on its socket (cheaper than a map per request). */
const serving = Symbol('serving');
type Tracked = Socket & { [serving]?: ServerResponse };

export function boundDrain(app: FastifyInstance, front: Front, timeoutMs: number) {
  const sockets = new Set<Tracked>();
  app.server.on('connection', (socket: Tracked) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    (req.socket as Tracked)[serving] = res;
  });

  /**
   * At the deadline: a connection still sending its request (headers or body)
   * gets 408, as it would have without the drain, and is closed once that is
   * written; any other (a response the client does not read, a handler still
   * running, a connection the front still has: it closed the idle ones at the
   * start) is cut. Whatever is still open a second later is cut too.
   */
  const expire = () => {
    for (const socket of sockets) {
      const res = socket[serving];
      const busy =
        front.owns(socket) || (res !== undefined && !res.writableFinished && (res.headersSent || res.req.complete));
      if (busy) socket.destroy();
      else {
        // The server keeps half-open sockets: without this, a client that
        // ignores the answer would still hold the connection.
        socket.once('finish', () => socket.destroy());
        answerOnSocket(socket, new AppError('REQUEST_TIMEOUT'));
      }
    }
    setTimeout(() => sockets.forEach((socket) => socket.destroy()), 1000).unref();
  };

  // Connections that go idle during the drain (their last request was in
  // flight) are closed as they do; otherwise each would wait out the keep-alive.
  let sweepIdle: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    front.close();
    sweepIdle = setInterval(() => app.server.closeIdleConnections(), 100);
    deadline = setTimeout(expire, timeoutMs).unref();
    done();
  });
  app.addHook('onClose', (_app, done) => {
    clearInterval(sweepIdle);
    clearTimeout(deadline);
    done();
  });
}
