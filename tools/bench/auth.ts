/**
 * The bench's AUTH=jwt load: an RS256 key pair of its own (the common choice
 * of identity providers), one signed token per user written to a file for
 * stampede-jwt.lua, the service's environment to verify them with
 * AUTH_PUBLIC_KEY, and what a CPU profile of that load spends verifying.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { exportSPKI, generateKeyPair, SignJWT } from 'jose';

import { profileShare } from './profile.js';

/** Enough users that the per-user limit (10) never stops the sale selling out: 10,000 items. */
const USERS = 2000;
const ISSUER = 'https://idp.bench/';
const AUDIENCE = 'flashsale';

export async function jwtLoad(dir: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const tokens = await Promise.all(
    Array.from({ length: USERS }, (_, i) =>
      new SignJWT({ sub: `u${i + 1}`, iss: ISSUER, aud: AUDIENCE, exp })
        .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
        .sign(privateKey),
    ),
  );
  const file = join(dir, 'tokens.txt');
  writeFileSync(file, `${tokens.join('\n')}\n`);
  return {
    /** For wrk: the token file stampede-jwt.lua reads. */
    wrkEnv: { TOKENS: file },
    service: {
      AUTH: 'jwt',
      AUTH_PUBLIC_KEY: await exportSPKI(publicKey),
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      AUTH_ALGORITHMS: 'RS256',
    },
  };
}

/**
 * In a CPU profile of the AUTH=jwt stampede: the share of the service's busy
 * CPU inside jose's verification, and inside its key import (turning the
 * KeyObject into a CryptoKey), which must be paid once per key and algorithm,
 * not per token.
 */
export function verificationShares(file: string) {
  const [verify, importing] = profileShare(file, [
    (frame) => frame.url.includes('/jose/'),
    (frame) => /^(prepareKey|toCryptoKey|importKey|importWithAlgCache|jwkToKey|importSPKI)$/.test(frame.functionName),
  ]);
  return { verify: verify!, importing: importing! };
}
