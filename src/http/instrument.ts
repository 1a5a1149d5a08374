/**
 * Request metrics and load shedding. `createRequestAccounting` holds the
 * in-flight count and the one way a request is counted; `instrument` applies
 * them to every Fastify route as hooks, and the hot lane (lane.ts) calls them
 * directly. Labels are bounded whatever clients send: `handler` is the matched
 * route's name or "unmatched", `method` is one of a fixed set or "OTHER".
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { AppError } from '../errors.js';
import { CHECKOUT_FAILURE_REASONS, PURCHASE_FAILURE_REASONS, tallies, type Metrics } from '../metrics/metrics.js';
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
    /** The answer is decided (onSend ran): its status and outcome are final. */
    decided: boolean;
    /** Counted in the request metrics, which happens exactly once. */
    counted: boolean;
  }
  interface FastifyContextConfig {
    /** The `handler` label; also selects the business counters ("checkout", "purchase"). */
    name?: string;
    /** A long-lived stream (src/events): capped by MAX_STREAMS, not counted in flight. */
    stream?: boolean;
  }
}

/** The answer to a request shed because MAX_IN_FLIGHT requests are in flight. */
export const overloaded = () => new AppError('UNAVAILABLE', 'service (overloaded)', 1);

export function createRequestAccounting(metrics: Metrics, maxInFlight: number) {
  let inFlight = 0;
  metrics.produce(['http_requests_in_flight'], ([g]) => g.set(inFlight));
  const total = tallies(metrics.httpRequestsTotal);
  const checkoutFailure = tallies(metrics.checkoutFailure);
  const purchaseFailure = tallies(metrics.purchaseFailure);
  const routes = new Map<string, ReturnType<typeof route>>();

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

  return {
    inFlight: () => inFlight,
    /** A request starts: false (and counted as shed) if it is one too many. */
    enter(): boolean {
      inFlight++;
      if (inFlight <= maxInFlight) return true;
      metrics.shedTotal.inc({ reason: 'in_flight' });
      return false;
    },
    leave() {
      inFlight--;
    },
    /** Counts one answered request; call exactly once per request. */
    count(handler: string, method: string, status: number, seconds: number, outcome: string) {
      const m = METHODS.has(method) ? method : 'OTHER';
      const key = `${handler} ${m}`;
      let counter = routes.get(key);
      if (!counter) routes.set(key, (counter = route(handler, m)));
      counter(status, seconds, outcome);
    },
    route,
  };

  /**
   * `count` for one route and method, its labelled children looked up by
   * status alone: the hot lane binds one per route, so its requests join and
   * hash no label strings to find them.
   */
  function route(handler: string, method: string) {
    const byStatus = new Map<number, { duration: Observer; total: Incrementer }>();
    return (status: number, seconds: number, outcome: string) => {
      let bound = byStatus.get(status);
      if (!bound) {
        const s = String(status);
        byStatus.set(
          status,
          (bound = {
            duration: metrics.httpRequestDuration.labels(handler, method, s),
            total: total(handler, method, s),
          }),
        );
      }
      bound.duration.observe(seconds);
      bound.total.inc();
      countBusiness(handler, outcome);
    };
  }
}
type Observer = { observe(value: number): void };
type Incrementer = { inc(): void };

export type RequestAccounting = ReturnType<typeof createRequestAccounting>;

export function instrument(app: FastifyInstance, requests: RequestAccounting) {
  app.decorateRequest('outcome', '');
  app.decorateRequest('decided', false);
  app.decorateRequest('counted', false);

  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.config.stream) return done();
    const admitted = requests.enter();
    reply.raw.once('close', () => {
      requests.leave();
      // The client left before the answer was written: Fastify will not run
      // onResponse, so a decided answer is counted here (an undecided one is
      // counted by onSend when the service decides it).
      if (request.decided && !reply.raw.writableFinished) count(request, reply);
    });
    if (!admitted) return void sendError(reply, overloaded());
    done();
  });

  // Every request is counted once, with the status and outcome the service
  // decided, whether or not its client stayed to read the answer: when the
  // response finishes (onResponse), or else when both the answer is decided
  // and the client is gone (the connection's close, or onSend if that is later).
  app.addHook('onSend', (request, reply, payload, done) => {
    request.decided = true;
    if (reply.raw.destroyed) count(request, reply);
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    count(request, reply);
    done();
  });

  function count(request: FastifyRequest, reply: FastifyReply) {
    if (request.counted) return;
    request.counted = true;
    const handler = request.routeOptions.config.name ?? 'unmatched';
    requests.count(handler, request.method, reply.statusCode, reply.elapsedTime / 1000, request.outcome);
  }
}
