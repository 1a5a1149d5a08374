/**
 * The one place errors become responses: {"error":{"code","message"}} (plus
 * "field" when one input is to blame), Retry-After on 429 and 503, 5xx
 * messages masked and logged once, here. Also the 404 for unknown paths.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { AppError, invalid } from '../errors.js';

/** Fastify's own errors (parsing, validation, limits) in the catalogue's terms. */
function fromFastify(err: FastifyError, request: FastifyRequest): AppError {
  if (err.validation) {
    const first = err.validation[0];
    const params = (first?.params ?? {}) as { missingProperty?: string };
    const field = params.missingProperty ?? first?.instancePath.replace(/^\//, '') ?? 'request';
    const schema = request.routeOptions.schema?.[err.validationContext ?? 'querystring'] as
      { properties?: Record<string, { description?: string }> } | undefined;
    const rule = schema?.properties?.[field]?.description;
    const why = params.missingProperty ? 'is required' : `is invalid${rule ? `: ${rule}` : ''}`;
    return invalid(field, why);
  }
  if (err.statusCode === 413) return new AppError('PAYLOAD_TOO_LARGE');
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return invalid('content-type', 'is malformed');
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError('INVALID_REQUEST', err.message.replace(/^FST_\w+: /, ''));
  }
  return new AppError('INTERNAL');
}

/** The error shape: {"error":{"code","message"}}, plus "field" when one input is to blame. */
export const errorPayload = (error: AppError) => ({
  error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) },
});

export function sendError(reply: FastifyReply, error: AppError) {
  reply.request.outcome = error.code;
  if (error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter));
  return reply.code(error.status).type('application/json').send(errorPayload(error));
}

/** Answers on the raw socket, in the error shape, and closes it: for requests that never reach a route. */
export function answerOnSocket(socket: Duplex, error: AppError) {
  if (!socket.writable) return socket.destroy();
  const body = JSON.stringify({ error: { code: error.code, message: error.message } });
  socket.end(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Requests Node's HTTP server rejects (malformed, URL and headers over Node's
 * 16 KiB limit, or not all arrived within the request timeout).
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex) {
  answerOnSocket(
    socket,
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new AppError('HEADERS_TOO_LARGE')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new AppError('REQUEST_TIMEOUT')
        : new AppError('INVALID_REQUEST', 'malformed HTTP request'),
  );
}

/** HTTP/1.1 requires Host; Node would refuse its absence with an empty 400, so it is checked here instead. */
export function requireHost(request: FastifyRequest, reply: FastifyReply, done: () => void) {
  if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
    void sendError(reply, new AppError('INVALID_REQUEST', 'the Host header is required', undefined, 'host'));
    return;
  }
  done();
}

/** Errors Fastify raises before a route runs (a bad URL, an over-long path parameter). */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  return sendError(
    reply,
    new AppError(
      'INVALID_REQUEST',
      err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : 'malformed URL',
    ),
  );
}

export function registerErrorHandling(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = err instanceof AppError ? err : fromFastify(err, request);
    if (error.status >= 500 && error.code === 'INTERNAL') request.log.error({ err }, 'request failed');
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new AppError('NOT_FOUND', `${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`)),
  );
}
