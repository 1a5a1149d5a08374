/**
 * Request metrics, load shedding and connection draining, as hooks around every route.
 * Labels are bounded whatever clients send: `handler` is the matched route's
 * name or "unmatched", `method` is one of a fixed set or "OTHER".
 */
import type { FastifyInstance } from 'fastify';

import { AppError } from '../errors.js';
import { CHECKOUT_FAILURE_REASONS, PURCHASE_FAILURE_REASONS, children, type Metrics } from '../metrics/metrics.js';
import { sendError } from './errors.js';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
const checkoutReasons = new Set<string>(CHECKOUT_FAILURE_REASONS);
const purchaseReasons = new Set<string>(PURCHASE_FAILURE_REASONS);
/** Failure reasons come from a fixed set whatever happens: anything else counts as INTERNAL. */
const reason = (outcome: string, known: Set<string>) => (known.has(outcome) ? outcome : 'INTERNAL');

declare module 'fastify' {
  interface FastifyRequest {
    /** "OK", "REPLAY" or the error code the request was answered with. */
    outcome: string;
  }
  interface FastifyContextConfig {
    /** The `handler` label; also selects the business counters ("checkout", "purchase"). */
    name?: string;
    /** A long-lived stream (src/events): capped by MAX_STREAMS, not counted in flight. */
    stream?: boolean;
  }
}

export function instrument(app: FastifyInstance, metrics: Metrics, maxInFlight: number) {
  let inFlight = 0;
  metrics.produce(['http_requests_in_flight'], ([g]) => g.set(inFlight));
  app.decorateRequest('outcome', '');

  // While draining, connections that go idle after close() began (their last
  // request was in flight) are closed too; otherwise each would hold the
  // process for the keep-alive timeout.
  let sweepIdle: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    sweepIdle = setInterval(() => app.server.closeIdleConnections(), 100);
    done();
  });
  app.addHook('onClose', (_app, done) => {
    clearInterval(sweepIdle);
    done();
  });

  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.config.stream) return done();
    inFlight++;
    reply.raw.once('close', () => inFlight--);
    if (inFlight > maxInFlight) {
      metrics.shedTotal.inc({ reason: 'in_flight' });
      void sendError(reply, new AppError('UNAVAILABLE', 'service (overloaded)', 1));
      return;
    }
    done();
  });

  const duration = children(metrics.httpRequestDuration);
  const total = children(metrics.httpRequestsTotal);
  const checkoutFailure = children(metrics.checkoutFailure);
  const purchaseFailure = children(metrics.purchaseFailure);
  app.addHook('onResponse', (request, reply, done) => {
    const handler = request.routeOptions.config.name ?? 'unmatched';
    const method = METHODS.has(request.method) ? request.method : 'OTHER';
    const status = String(reply.statusCode);
    duration(handler, method, status).observe(reply.elapsedTime / 1000);
    total(handler, method, status).inc();
    countBusiness(handler, request.outcome);
    done();
  });

  // Business counters: every request that reached checkout or purchase is an
  // attempt, and ends as exactly one success, replay or failure{reason}.
  function countBusiness(handler: string, outcome: string) {
    if (handler === 'checkout') {
      metrics.checkoutAttempts.inc();
      if (outcome === 'OK') metrics.checkoutSuccess.inc();
      else checkoutFailure(reason(outcome, checkoutReasons)).inc();
    } else if (handler === 'purchase') {
      metrics.purchaseAttempts.inc();
      if (outcome === 'OK') metrics.purchaseSuccess.inc();
      else if (outcome === 'REPLAY') metrics.purchaseReplays.inc();
      else purchaseFailure(reason(outcome, purchaseReasons)).inc();
    }
  }

  return { inFlight: () => inFlight };
}
