/**
 * AUTH=jwt on the buyer's routes: `Authorization: Bearer <JWT>`, and the buyer
 * is the token's `sub`. A `user_id` parameter, if sent, must equal it (403);
 * if absent it is filled in from `sub`, so clients that send it keep working
 * and new ones may leave it out. Runs before validation (preValidation) for
 * that reason. AUTH=off: a no-op, today's contract.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { sendError } from '../http/errors.js';
import { USER_ID } from '../http/schemas.js';
import type { Infra } from '../infra.js';
import { children } from '../metrics/metrics.js';
import { createVerifier, Rejected, type Verifier } from './verifier.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The verifier of AUTH=jwt (undefined when off), shared by the buyer check and the operator API. */
    auth: { verifier?: Verifier; buyer: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown> };
  }
  interface FastifyRequest {
    /** AUTH=jwt: the verified buyer (the token's sub); undefined when AUTH=off. */
    buyer: string | undefined;
  }
}

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;
const userId = new RegExp(USER_ID);

/** The bearer token of a request, if it sent one. */
export const bearerToken = (request: FastifyRequest) => BEARER.exec(request.headers.authorization ?? '')?.[1];

/** 401 in the error shape, with the challenge RFC 6750 asks for (no error code when no token was sent). */
export function unauthenticated(reply: FastifyReply, why: string, tokenSent: boolean) {
  const challenge = `Bearer realm="flashsale"${tokenSent ? ', error="invalid_token"' : ''}`;
  return sendError(reply.header('www-authenticate', challenge), new AppError('UNAUTHENTICATED', why));
}

/** The route hook checkout and purchase declare: `preValidation: buyer`. */
export function buyer(request: FastifyRequest, reply: FastifyReply) {
  return request.server.auth.buyer(request, reply);
}

function createBuyerCheck(verifier: Verifier, metrics: Infra['metrics']) {
  const rejected = children(metrics.authRejections);
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerToken(request);
    let sub: string;
    try {
      if (!token) throw new Rejected('missing');
      ({ sub } = await verifier.verify(token));
      if (!userId.test(sub)) throw new Rejected('subject');
    } catch (err) {
      const reason = err instanceof Rejected ? err.reason : 'malformed';
      rejected(reason).inc();
      if (reason === 'keys_unavailable') {
        return sendError(reply, new AppError('UNAVAILABLE', 'identity provider keys', 1));
      }
      return unauthenticated(reply, `bearer token ${reason.replace(/_/g, ' ')}`, token !== undefined);
    }
    request.buyer = sub;
    if (request.routeOptions.config.name !== 'checkout') return; // purchase: the code must be the buyer's
    const query = request.query as Record<string, unknown>;
    if (query.user_id === undefined) query.user_id = sub;
    else if (query.user_id !== sub) {
      rejected('user_mismatch').inc();
      return sendError(
        reply,
        new AppError('FORBIDDEN', "user_id must be the authenticated user (the token's sub)", undefined, 'user_id'),
      );
    }
  };
}

/** Sets up AUTH from config: the buyer check and, with JWKS, the periodic key refresh. */
export function registerAuth(app: FastifyInstance, deps: Pick<Infra, 'config' | 'metrics' | 'log'>) {
  const { config, metrics, log } = deps;
  app.decorateRequest('buyer', undefined);
  if (config.AUTH === 'off') {
    app.decorate('auth', { buyer: async () => {} });
    return;
  }
  const verifier = createVerifier(config);
  app.decorate('auth', { verifier, buyer: createBuyerCheck(verifier, metrics) });
  if (config.AUTH_JWKS_URL) refreshKeys(app, verifier, config, log);
}

function refreshKeys(app: FastifyInstance, verifier: Verifier, config: Config, log: Infra['log']) {
  let timer: NodeJS.Timeout | undefined;
  let open = true;
  const refresh = (): Promise<void> =>
    verifier
      .refresh()
      .catch((err: unknown) => log.warn({ err }, 'could not fetch the identity provider keys; keeping those held'))
      .finally(() => {
        if (open) timer = setTimeout(refresh, config.AUTH_JWKS_REFRESH_MS);
      });
  app.addHook('onReady', refresh);
  app.addHook('onClose', async () => {
    open = false;
    clearTimeout(timer);
  });
}
