/**
 * A local identity provider for the AUTH=jwt tests: key pairs made by jose, a
 * JWKS endpoint on 127.0.0.1 that can rotate its keys or go down, and tokens
 * signed with any of them (or forged: see auth.test.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

export const ISSUER = 'https://idp.test/';
export const AUDIENCE = 'flashsale';

export interface Key {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
  pem: string;
}

export async function newKey(kid: string, alg = 'RS256'): Promise<Key> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return {
    kid,
    alg,
    privateKey,
    jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    pem: await exportSPKI(publicKey),
  };
}

/** A signed token; claims default to a valid buyer token for `sub`, for an hour. */
export function sign(key: Key, claims: JWTPayload & { sub?: string }, header: { kid?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 3600, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey);
}

export interface IdentityProvider {
  jwksUrl: string;
  /** The keys the JWKS endpoint publishes from now on. */
  publish(keys: Key[]): void;
  /** While down, every connection is cut before an answer. */
  setUp(up: boolean): void;
  fetches(): number;
  close(): Promise<void>;
}

export async function identityProvider(keys: Key[]): Promise<IdentityProvider> {
  let published = keys;
  let up = true;
  let fetches = 0;
  const server: Server = createServer((request, response) => {
    if (!up) return request.socket.destroy();
    fetches++;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ keys: published.map((k) => k.jwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    publish: (next) => (published = next),
    setUp: (next) => (up = next),
    fetches: () => fetches,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The environment of an AUTH=jwt instance. */
export const jwtEnv = (keys: { jwksUrl: string } | { pem: string }) => ({
  AUTH: 'jwt',
  AUTH_ISSUER: ISSUER,
  AUTH_AUDIENCE: AUDIENCE,
  AUTH_JWKS_URL: 'jwksUrl' in keys ? keys.jwksUrl : '',
  AUTH_PUBLIC_KEY: 'pem' in keys ? keys.pem : '',
});

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
