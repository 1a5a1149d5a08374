/**
 * Who may use the operator API, never a buyer's credentials:
 * - a bearer token listed in ADMIN_TOKENS (held as SHA-256 hashes; the
 *   presented token's hash is compared with every entry in constant time), or
 * - with AUTH=jwt, a JWT from the identity provider (same issuer, audience and
 *   keys as buyers') whose `roles` array, or space-separated `scope`, holds
 *   AUTH_ADMIN_ROLE.
 * No credentials or unverifiable ones: 401. A valid token without the role (a
 * buyer's): 403. The actor named in the audit is the token's id
 * (`token:<hash prefix>`) or `sub:<sub>`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyRequest } from 'fastify';

import { bearerToken } from '../auth/buyer.js';
import { Rejected, type Verifier } from '../auth/verifier.js';
import type { Config } from '../config.js';
import { AppError, unavailable } from '../errors.js';

export type Admit = { actor: string } | { refused: AppError; challenge?: string };

export function createCredentials(config: Pick<Config, 'ADMIN_TOKENS' | 'AUTH_ADMIN_ROLE'>, verifier?: Verifier) {
  const tokens = config.ADMIN_TOKENS ?? [];

  /** The configured token this one is, comparing with every entry (no early exit, no length leak). */
  function matchToken(token: string): string | undefined {
    const hash = createHash('sha256').update(token).digest();
    let match: string | undefined;
    for (const entry of tokens) if (timingSafeEqual(hash, entry.hash)) match = entry.id;
    return match;
  }

  function hasRole(claims: Record<string, unknown>): boolean {
    const role = config.AUTH_ADMIN_ROLE;
    if (!role) return false;
    const roles = claims.roles;
    if (Array.isArray(roles) && roles.includes(role)) return true;
    return typeof claims.scope === 'string' && claims.scope.split(' ').includes(role);
  }

  const unauthenticated = (why: string, tokenSent: boolean): Admit => ({
    refused: new AppError('UNAUTHENTICATED', why),
    challenge: `Bearer realm="flashsale-admin"${tokenSent ? ', error="invalid_token"' : ''}`,
  });

  return {
    async admit(request: FastifyRequest): Promise<Admit> {
      const token = bearerToken(request);
      if (!token) return unauthenticated('an operator bearer token is required', false);
      const id = matchToken(token);
      if (id) return { actor: id };
      if (!verifier || token.split('.').length !== 3) return unauthenticated('unknown operator token', true);
      let claims: Awaited<ReturnType<Verifier['verify']>>;
      try {
        claims = await verifier.verify(token);
      } catch (err) {
        if (err instanceof Rejected && err.reason === 'keys_unavailable') {
          return { refused: unavailable('identity provider keys') };
        }
        return unauthenticated('operator token could not be verified', true);
      }
      if (!hasRole(claims)) {
        return { refused: new AppError('FORBIDDEN', `the token of ${claims.sub} lacks the operator role`) };
      }
      return { actor: `sub:${claims.sub}` };
    },
  };
}

export type Credentials = ReturnType<typeof createCredentials>;
