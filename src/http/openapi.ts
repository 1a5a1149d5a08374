/**
 * The OpenAPI document of the service, built by @fastify/swagger from the route
 * schemas, served at /openapi.json (its copy is docs/openapi.json) and shown to
 * people by Swagger UI at /docs.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema } from 'fastify';

import { errorBody, publishedQueryInteger, responses } from './schemas.js';

/** Answers no operation can list: they come before a route is chosen, or from none. */
const description = `Hourly flash sales of generated items.

Every error is \`{"error":{"code","message"}}\`, with \`field\` when one input is to blame;
429 and 503 carry \`Retry-After\`. Besides the answers each operation lists:

- any other method on a documented path answers 405 \`METHOD_NOT_ALLOWED\` with \`Allow\`
  (\`#/components/responses/MethodNotAllowed\`); HEAD is answered wherever GET is, without a body;
- an unknown path answers 404 \`NOT_FOUND\` (\`#/components/responses/NotFound\`);
- a request not fully received within \`REQUEST_TIMEOUT_MS\` gets 408 \`REQUEST_TIMEOUT\`, and a
  request line or headers over 16 KiB get 431 \`HEADERS_TOO_LARGE\`, both in the error shape;
- a bug answers 500 \`INTERNAL\`, its details only in the service's log.`;

const json = (schema: object) => ({ 'application/json': { schema } });

const components = {
  responses: {
    MethodNotAllowed: {
      description: '`METHOD_NOT_ALLOWED`: the path exists, the method is not one of its operations',
      headers: {
        Allow: { description: "the path's methods, comma-separated", schema: { type: 'string' as const } },
      },
      content: json(errorBody(['METHOD_NOT_ALLOWED'])),
    },
    NotFound: { description: '`NOT_FOUND`: no route has this path', content: json(errorBody(['NOT_FOUND'])) },
  },
  // docs/security.md: who may call what.
  securitySchemes: {
    adminToken: {
      type: 'http' as const,
      scheme: 'bearer',
      description:
        'An operator token listed in `ADMIN_TOKENS`, or (with `AUTH=jwt`) a JWT of the identity provider whose `roles` or `scope` holds `AUTH_ADMIN_ROLE`',
    },
  },
};

/** The document shows query parameters as what a client may send, not how they are validated. */
function publish({ schema, url }: { schema: FastifySchema; url: string }) {
  const query = schema?.querystring as { properties?: Record<string, Record<string, unknown>> } | undefined;
  if (!query?.properties) return { schema, url };
  const properties = Object.fromEntries(
    Object.entries(query.properties).map(([name, property]) => [name, publishedQueryInteger(property)]),
  );
  return { schema: { ...schema, querystring: { ...query, properties } }, url };
}

export async function openapi(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: { info: { title: 'flashsale', version: '1.0.0', description }, components },
    transform: publish,
  });
  // Not awaited: this loads with the routes, after the caller has set up error
  // handling, metrics and 405 answers, which these routes then share.
  void app.register(documentRoutes);
}

async function documentRoutes(app: FastifyInstance) {
  app.get('/openapi.json', {
    config: { name: 'openapi' },
    schema: {
      summary: 'This document',
      response: responses(
        { 200: { description: 'The OpenAPI 3 document', type: 'object', additionalProperties: true } },
        {},
      ),
    },
    handler: async () => app.swagger(),
  });
  // Swagger UI's page, assets and copy of the document: one `handler` label
  // whatever file is asked for, and not operations of the API.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, name: 'docs' };
    route.schema = { ...route.schema, hide: true };
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
}
