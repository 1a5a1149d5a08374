/**
 * No route takes a body: one sent anyway is read and ignored, whatever its
 * Content-Type (so `curl -d ''` works), and one over BODY_LIMIT gets 413 on
 * every method. Fastify reads bodies only for methods it expects one on
 * (not GET, HEAD, TRACE or the extra methods), so the limit is enforced here
 * for the others.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';

import { AppError } from '../errors.js';
import { sendError } from './errors.js';

export const BODY_LIMIT = 16 * 1024;

export function ignoreBodies(app: FastifyInstance) {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) => done(null, undefined));

  // The rest of an oversized body is not read: the connection closes after the answer.
  const tooLarge = (reply: FastifyReply) =>
    sendError(reply.header('connection', 'close'), new AppError('PAYLOAD_TOO_LARGE'));
  app.addHook('onRequest', (request, reply, done) => {
    if (Number(request.headers['content-length']) > BODY_LIMIT) return void tooLarge(reply);
    done();
  });
  // A chunked body Fastify did not read (its size is unknown up front) is counted here.
  app.addHook('preValidation', (request, reply, done) => {
    const raw = request.raw;
    if (raw.readableEnded || request.headers['transfer-encoding'] === undefined) return done();
    let size = 0;
    const stop = () => raw.off('data', onData).off('end', onEnd).off('close', stop);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) return;
      stop();
      void tooLarge(reply);
    };
    const onEnd = () => {
      stop();
      done();
    };
    raw.on('data', onData).on('end', onEnd).on('close', stop);
  });
}
