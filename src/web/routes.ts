/**
 * The storefront: GET / and its assets, built by scripts/build-web.mjs from
 * src/web/page into dist/src/web/public (asset names carry a content hash).
 * Assets are cached for ever (`immutable`); the page itself is revalidated, so
 * a deploy is seen at once. Every answer here carries the security headers: a
 * CSP without 'unsafe-inline' (the page has no inline script or style), nosniff,
 * and frame-ancestors 'none' against clickjacking.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

const ROOT = fileURLToPath(new URL('./public/', import.meta.url));
const IMMUTABLE = 'public, max-age=31536000, immutable';

export const SECURITY_HEADERS = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

export async function webRoutes(app: FastifyInstance) {
  if (!existsSync(ROOT)) throw new Error(`the storefront is not built (${ROOT}): run node scripts/prepare.mjs`);
  await app.register(async (scope) => {
    // One `handler` label for the page and every asset; none is an API operation.
    scope.addHook('onRoute', (route) => {
      route.config = { ...route.config, name: 'web' };
      route.schema = { ...route.schema, hide: true };
    });
    scope.addHook('onSend', async (_request, reply) => {
      reply.headers(SECURITY_HEADERS);
    });
    await scope.register(fastifyStatic, {
      root: ROOT,
      // One route per built file (no wildcard): anything else is the API's 404.
      wildcard: false,
      index: ['index.html'],
      cacheControl: false,
      setHeaders: (res, path) => res.setHeader('cache-control', path.includes('/assets/') ? IMMUTABLE : 'no-cache'),
    });
  });
}
