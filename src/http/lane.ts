/**
 * The hot lane (issue 16): the requests that come in floods (POST /checkout
 * and POST /purchase in a stampede, POST /queue/join and GET /queue/status
 * from a waiting crowd)
 * answered from Node's request event, below Fastify, when the request is the
 * plain one clients send: no body, a Host, a query of exactly the route's
 * parameters, each once, each matching its pattern as sent (no
 * percent-encoding). Every other request, and every request while the lane is
 * not `ready` (a sale an operator paused or ended), goes on to the Fastify
 * route, which stays the reference for the route's whole contract (validation
 * messages, 405, 413, HEAD, AUTH=jwt, the waiting room's guard): the lane
 * never refuses what the route would take, and answers what it takes as the
 * route does, from the same use case, with the same error shape, shedding and
 * metrics (test/lane.test.ts compares the two). What it saves, and why it
 * exists: docs/ARCHITECTURE.md, "The hot lane".
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';

import proxyAddr from '@fastify/proxy-addr';
import type { Logger } from 'pino';

import { AppError } from '../errors.js';
import { tallies, type Metrics } from '../metrics/metrics.js';
import { errorPayload } from './errors.js';
import { overloaded, type RequestAccounting } from './instrument.js';

export interface LaneRoute {
  method: 'GET' | 'POST';
  /** The `handler` label, as the Fastify route's. */
  name: string;
  /** Every query parameter the lane takes, all required: anything else goes to the Fastify route. */
  params: Record<string, RegExp>;
  /** False while the route needs what only the Fastify route does (checked per request). */
  ready: () => boolean;
  /**
   * The route's answer: the outcome label, the body of a 200 and its headers,
   * or a thrown AppError; an answer known without I/O may come back at once.
   */
  answer(query: Record<string, string>, ip: string): LaneAnswer | Promise<LaneAnswer>;
}
export interface LaneAnswer {
  outcome: string;
  body: unknown;
  headers?: Record<string, string>;
}
/** What the lane reads of a request: Node's IncomingMessage, or the front's (front.ts). */
export type LaneRequest = Pick<IncomingMessage, 'method' | 'url' | 'headers' | 'socket'>;
/** What the lane answers with: Node's ServerResponse, or the front's connection. */
export interface LaneResponse {
  writeHead(status: number, headers: OutgoingHttpHeaders): { end(body: string): unknown };
}

const JSON_TYPE = 'application/json; charset=utf-8';

export function createLane(deps: {
  requests: RequestAccounting;
  metrics: Metrics;
  log: Logger;
  trustProxy: false | string;
}) {
  const { requests, metrics, log } = deps;
  type Added = LaneRoute & {
    served: { inc(): void };
    count: ReturnType<RequestAccounting['route']>;
  };
  const routes = new Map<string, Added>();
  // The client's address as Fastify's request.ip gives it (trustProxy: the same list, the same library).
  const trusted = deps.trustProxy ? proxyAddr.compile(deps.trustProxy.split(',').map((e) => e.trim())) : undefined;
  // proxyAddr reads only the headers and the socket's address, which a LaneRequest has.
  const ipOf = (req: LaneRequest) => (trusted ? proxyAddr(req as IncomingMessage, trusted) : req.socket.remoteAddress!);

  /** The query's parameters if they are exactly the route's, each once and valid as sent; else undefined. */
  function parse(search: string, params: LaneRoute['params']): Record<string, string> | undefined {
    const query: Record<string, string> = {};
    let found = 0;
    for (const pair of search.split('&')) {
      const eq = pair.indexOf('=');
      const key = pair.slice(0, eq);
      const pattern = eq > 0 ? params[key] : undefined;
      if (!pattern || key in query) return undefined;
      const value = pair.slice(eq + 1);
      if (!pattern.test(value)) return undefined;
      query[key] = value;
      found++;
    }
    return found === Object.keys(params).length ? query : undefined;
  }

  function send(res: LaneResponse, status: number, body: unknown, extra?: Record<string, string>) {
    const payload = JSON.stringify(body);
    const headers = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(payload), ...extra };
    res.writeHead(status, headers).end(payload);
  }
  const retryAfter = (error: AppError) =>
    error.retryAfter === undefined ? undefined : { 'retry-after': String(error.retryAfter) };

  function serve(route: Added, query: Record<string, string>, req: LaneRequest, res: LaneResponse) {
    const started = performance.now();
    route.served.inc();
    if (!requests.enter()) return fail(route, res, started, overloaded());
    let answer: LaneAnswer | Promise<LaneAnswer>;
    try {
      answer = route.answer(query, ipOf(req));
    } catch (err) {
      return fail(route, res, started, err);
    }
    // An answer known without I/O (a status poll) is sent now: no promise, no microtask.
    if (!(answer instanceof Promise)) return succeed(route, res, started, answer);
    answer.then(
      (known) => succeed(route, res, started, known),
      (err: unknown) => fail(route, res, started, err),
    );
  }
  function succeed(route: Added, res: LaneResponse, started: number, answer: LaneAnswer) {
    send(res, 200, answer.body, answer.headers);
    finish(route, started, 200, answer.outcome);
  }
  function fail(route: Added, res: LaneResponse, started: number, err: unknown) {
    if (!(err instanceof AppError)) log.error({ err }, 'request failed');
    const error = err instanceof AppError ? err : new AppError('INTERNAL');
    send(res, error.status, errorPayload(error), retryAfter(error));
    finish(route, started, error.status, error.code);
  }
  function finish(route: Added, started: number, status: number, outcome: string) {
    requests.leave();
    route.count(status, (performance.now() - started) / 1000, outcome);
  }

  return {
    /** Adds a route to the lane (the Fastify route of the same method and path must exist: it takes the rest). */
    add(path: string, route: LaneRoute) {
      const served = tallies(metrics.hotLaneRequests)(route.name);
      routes.set(`${route.method} ${path}`, { ...route, served, count: requests.route(route.name, route.method) });
    },
    /** Whether the lane has a route for this "METHOD /path" (it may still leave a request to Fastify). */
    routes: (methodAndPath: string) => routes.has(methodAndPath),
    /** Answers the request if it is one for the lane (true), else leaves it alone (false). */
    take(req: LaneRequest, res: LaneResponse): boolean {
      if (routes.size === 0) return false;
      const url = req.url!;
      const mark = url.indexOf('?');
      const route = mark > 0 ? routes.get(`${req.method} ${url.slice(0, mark)}`) : undefined;
      if (!route || !route.ready()) return false;
      const { headers } = req;
      if (headers.host === undefined || headers['transfer-encoding'] !== undefined) return false;
      if (headers['content-length'] !== undefined && headers['content-length'] !== '0') return false;
      const query = parse(url.slice(mark + 1), route.params);
      if (!query) return false;
      serve(route, query, req, res);
      return true;
    },
  };
}

export type Lane = ReturnType<typeof createLane>;
