import type { FastifyInstance } from 'fastify';

import { responses } from '../http/schemas.js';
import type { Metrics } from './metrics.js';

export function metricsRoutes(app: FastifyInstance, metrics: Metrics) {
  app.get('/metrics', {
    config: { name: 'metrics' },
    schema: {
      summary: 'Prometheus metrics of this instance',
      response: responses(
        {
          200: {
            description: 'The Prometheus text exposition',
            content: { [metrics.registry.contentType]: { schema: { type: 'string' } } },
          },
        },
        {},
      ),
    },
    handler: async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  });
}
