/**
 * Verifies a bearer JWT with jose: signature by a key of the identity
 * provider (its JWKS, or AUTH_PUBLIC_KEY), an allow-listed asymmetric
 * algorithm, AUTH_ISSUER, AUTH_AUDIENCE, exp and nbf (with
 * AUTH_CLOCK_TOLERANCE_S), and a `sub`. Every refusal is named by one of a
 * fixed set of reasons (metrics label, log field), never the library's text.
 *
 * Keys, not tokens, are cached: the key set is fetched once, again when a
 * token names an unknown kid (at most once per AUTH_JWKS_COOLDOWN_MS), and
 * every AUTH_JWKS_REFRESH_MS so a withdrawn key stops working. A failed fetch
 * keeps the keys already held; with none held, verification answers 503:
 * never "let everyone in".
 */
import { createPublicKey, type KeyObject } from 'node:crypto';

import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

import type { Config } from '../config.js';
import type { AuthRejection } from '../metrics/metrics.js';

/** A refusal: `reason` is the metric label; `keysUnavailable` answers 503 instead of 401. */
export class Rejected extends Error {
  constructor(readonly reason: AuthRejection) {
    super(reason);
  }
}

/** Failures of the key set itself (fetch, timeout, bad document), as opposed to a bad token. */
class KeysUnavailable extends Error {}

/** Errors the key set raises about the token (its kid or alg), not about fetching. */
const TOKEN_KEY_ERRORS = new Set([
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JOSE_NOT_SUPPORTED',
]);

export function reasonOf(err: unknown): AuthRejection {
  if (err instanceof Rejected) return err.reason;
  if (err instanceof KeysUnavailable) return 'keys_unavailable';
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    return err.claim === 'nbf'
      ? 'not_yet_valid'
      : err.claim === 'iss'
        ? 'issuer'
        : err.claim === 'aud'
          ? 'audience'
          : 'claims';
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature';
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return 'unknown_key';
  // JWSInvalid, JWTInvalid, JOSENotSupported, and a key that does not fit the token's alg.
  return 'malformed';
}

export type Verifier = ReturnType<typeof createVerifier>;

export function createVerifier(
  config: Pick<
    Config,
    | 'AUTH_JWKS_URL'
    | 'AUTH_PUBLIC_KEY'
    | 'AUTH_ISSUER'
    | 'AUTH_AUDIENCE'
    | 'AUTH_ALGORITHMS'
    | 'AUTH_CLOCK_TOLERANCE_S'
    | 'AUTH_JWKS_COOLDOWN_MS'
    | 'DEPENDENCY_TIMEOUT_MS'
  >,
) {
  let key: KeyObject | JWTVerifyGetKey;
  let reload = async () => {};
  if (config.AUTH_JWKS_URL) {
    const jwks = createRemoteJWKSet(new URL(config.AUTH_JWKS_URL), {
      cooldownDuration: config.AUTH_JWKS_COOLDOWN_MS,
      // Never expire on age inside jose: a stale set that cannot be refetched
      // would fail every token. refresh() below replaces it when it can.
      cacheMaxAge: Infinity,
      timeoutDuration: config.DEPENDENCY_TIMEOUT_MS,
    });
    key = async (header, token) => {
      try {
        return await jwks(header, token);
      } catch (err) {
        if (err instanceof errors.JOSEError && TOKEN_KEY_ERRORS.has(err.code)) throw err;
        throw new KeysUnavailable('identity provider keys', { cause: err });
      }
    };
    reload = () => jwks.reload();
  } else {
    key = createPublicKey(config.AUTH_PUBLIC_KEY!);
  }
  const options = {
    issuer: config.AUTH_ISSUER!,
    audience: config.AUTH_AUDIENCE!,
    algorithms: config.AUTH_ALGORITHMS,
    clockTolerance: config.AUTH_CLOCK_TOLERANCE_S,
    requiredClaims: ['sub', 'exp'],
  };

  return {
    /** The token's claims, or throws Rejected. */
    async verify(token: string): Promise<JWTPayload & { sub: string }> {
      try {
        const { payload } =
          typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
        return payload as JWTPayload & { sub: string };
      } catch (err) {
        throw new Rejected(reasonOf(err));
      }
    },
    /** Fetches the key set again (a failure keeps the keys held). */
    refresh: reload,
  };
}
