/**
 * Request metrics, load shedding and connection draining, as hooks around every route.
 * Labels are bounded whatever clients send: `handler` is the matched route's
 * name or "unmatched", `method` is one of a fixed set or "OTHER".
 */
import type { FastifyInstance } from 'fastify';

import { AppError } from '../errors.js';
import { CHECKOUT_FAILURE_REASONS, PURCHASE_FAILURE_REASONS, type Metrics } from '../metrics/metrics.js';
import { sendError } from './errors.js';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyRequest {
    /** "OK", "REPLAY" or the error code the request was answered with. */
    outcome: string;
  }
  interface FastifyContextConfig {
    /** The `handler` label; also selects the business counters ("checkout", "purchase"). */
    name?: string;
  }
}

export function instrument(app: FastifyInstance, metrics: Metrics, maxInFlight: number) {
  let inFlight = 0;
  metrics.sources.inFlight = () => inFlight;
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
    inFlight++;
    reply.raw.once('close', () => inFlight--);
    if (inFlight > maxInFlight) {
      metrics.shedTotal.inc({ reason: 'in_flight' });
      void sendError(reply, new AppError('UNAVAILABLE', 'service (overloaded)', 1));
      return;
    }
    done();
  });

  // prom-client hashes label objects on every call; children are cached per label set.
  const series = new Map<string, { observe(v: number): void; inc(): void }>();
  app.addHook('onResponse', (request, reply, done) => {
    const handler = request.routeOptions.config.name ?? 'unmatched';
    const method = METHODS.has(request.method) ? request.method : 'OTHER';
    const key = `${handler} ${method} ${reply.statusCode}`;
    let s = series.get(key);
    if (!s) {
      const labels = { handler, method, status_code: String(reply.statusCode) };
      const duration = metrics.httpRequestDuration.labels(labels);
      const total = metrics.httpRequestsTotal.labels(labels);
      s = { observe: (v) => duration.observe(v), inc: () => total.inc() };
      series.set(key, s);
    }
    s.observe(reply.elapsedTime / 1000);
    s.inc();
    countBusiness(metrics, handler, request.outcome);
    done();
  });
}

const checkoutReasons = new Set<string>(CHECKOUT_FAILURE_REASONS);
const purchaseReasons = new Set<string>(PURCHASE_FAILURE_REASONS);
const reason = (outcome: string, known: Set<string>) => (known.has(outcome) ? outcome : 'INTERNAL');

function countBusiness(metrics: Metrics, handler: string, outcome: string) {
  if (handler === 'checkout') {
    metrics.checkoutAttempts.inc();
    if (outcome === 'OK') metrics.checkoutSuccess.inc();
    else metrics.checkoutFailure.inc({ reason: reason(outcome, checkoutReasons) });
  } else if (handler === 'purchase') {
    metrics.purchaseAttempts.inc();
    if (outcome === 'OK') metrics.purchaseSuccess.inc();
    else if (outcome === 'REPLAY') metrics.purchaseReplays.inc();
    else metrics.purchaseFailure.inc({ reason: reason(outcome, purchaseReasons) });
  }
}
