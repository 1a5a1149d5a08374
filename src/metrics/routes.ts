import type { FastifyInstance } from 'fastify';

import type { Metrics } from './metrics.js';

export function metricsRoutes(app: FastifyInstance, metrics: Metrics) {
  app.get('/metrics', {
    config: { name: 'metrics' },
    handler: async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  });
}
