/**
 * Methods: a known path with the wrong method answers 405 METHOD_NOT_ALLOWED
 * with `Allow`, an unknown path 404, whatever the method, CONNECT included.
 */
import { METHODS, ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

import type { FastifyInstance } from 'fastify';

import { AppError } from '../errors.js';
import { sendError } from './errors.js';

/**
 * Call before registering routes: every method Node's parser accepts is
 * routed, and each path's methods are remembered. QUERY is made bodyless:
 * Fastify would otherwise refuse it without a Content-Type before it could
 * get a 405. Returns the step that adds the 405 routes, once all routes are in.
 */
export function methodRouting(app: FastifyInstance) {
  for (const method of METHODS) {
    if (!app.supportedMethods.includes(method)) app.addHttpMethod(method);
  }
  app.addHttpMethod('QUERY', { overrideExisting: true });
  const allowed = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // A plugin's index ('/docs' under that prefix) is also served at '/docs/', which Fastify does not report.
    const twin = route.routePath === '' && route.prefixTrailingSlash !== 'no-slash';
    for (const url of twin ? [route.url, `${route.url}/`] : [route.url]) {
      for (const m of methods) allowed.set(url, (allowed.get(url) ?? new Set()).add(m));
    }
  });
  routeConnect(app);

  return function addMethodNotAllowed() {
    for (const [url, registered] of [...allowed]) {
      const methods = [...registered]; // a copy: the 405 route below is reported to onRoute too
      app.route({
        method: app.supportedMethods.filter((m) => !methods.includes(m)),
        url,
        config: { name: 'method_not_allowed' },
        schema: { hide: true },
        handler: (request, reply) =>
          sendError(reply.header('allow', methods.join(', ')), new AppError('METHOD_NOT_ALLOWED', request.method)),
      });
    }
  };
}

/**
 * Node takes CONNECT (a proxy tunnel) off the request path and drops the
 * connection unless someone listens: here it is routed like any request, on
 * a response of its own, so it gets 405 or 404 and is counted; the
 * connection closes after the answer.
 */
function routeConnect(app: FastifyInstance) {
  app.server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.destroySoon();
    });
    app.routing(req, res);
  });
}
