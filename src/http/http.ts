/**
 * The HTTP layer every route sits in: Fastify's options, the error shape,
 * request metrics and shedding, the drain, the Host, body and method rules.
 * Routes are added by the caller, then `addMethodNotAllowed()` once they all are.
 */
import { createServer, type ServerOptions } from 'node:http';

import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';

import type { Config } from '../config.js';
import type { Metrics } from '../metrics/metrics.js';
import { BODY_LIMIT, ignoreBodies } from './body.js';
import { boundDrain } from './drain.js';
import { clientErrorHandler, frameworkErrors, registerErrorHandling, requireHost } from './errors.js';
import { createRequestAccounting, instrument } from './instrument.js';
import { createFront } from './front.js';
import { createLane } from './lane.js';
import { methodRouting } from './methods.js';
import { openapi } from './openapi.js';

type ServerFactoryOptions = {
  http: ServerOptions;
  keepAliveTimeout: number;
  requestTimeout: number;
  connectionTimeout: number;
};

export async function createHttp({ config, log, metrics }: { config: Config; log: Logger; metrics: Metrics }) {
  const requests = createRequestAccounting(metrics, config.MAX_IN_FLIGHT);
  const lane = createLane({ requests, metrics, log, trustProxy: config.TRUST_PROXY });
  const front = createFront(lane);
  const app = Fastify({
    // The server Fastify would create, with the hot lane (lane.ts) before Fastify's own handler,
    // and the lane's front (front.ts) before the server on each connection.
    // Its options are the ones below, with Fastify's defaults filled in.
    serverFactory: (handler, options) => {
      const { http, keepAliveTimeout, requestTimeout, connectionTimeout } = options as ServerFactoryOptions;
      const server = createServer(http, (req, res) => lane.take(req, res) || handler(req, res));
      server.keepAliveTimeout = keepAliveTimeout;
      server.requestTimeout = requestTimeout;
      server.setTimeout(connectionTimeout);
      front.install(server, { keepAliveTimeoutMs: keepAliveTimeout, requestTimeoutMs: config.REQUEST_TIMEOUT_MS });
      return server;
    },
    loggerInstance: log as FastifyBaseLogger, // pino's Logger is wider than Fastify's logger type
    // Per-request log lines cost more than the request at 15k/s; metrics count requests.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT, // no route takes a body
    trustProxy: config.TRUST_PROXY, // request.ip, the per-IP rate limit's key
    // A slow client must not hold a connection, or a SIGTERM drain, for ever.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: 1000, // how often those timeouts are enforced (Node's default: 30 s)
      requireHostHeader: false, // checked by requireHost, to answer in the error shape
    },
    clientErrorHandler,
    frameworkErrors,
    // While draining, requests already on open connections are served, not refused;
    // boundDrain() closes those connections as they go idle, and ends the stuck ones.
    return503OnClosing: false,
  });
  await openapi(app);
  registerErrorHandling(app);
  instrument(app, requests);
  boundDrain(app, front, config.REQUEST_TIMEOUT_MS);
  app.addHook('onRequest', requireHost);
  ignoreBodies(app);
  const addMethodNotAllowed = methodRouting(app);
  return { app, inFlight: requests.inFlight, lane, addMethodNotAllowed };
}
