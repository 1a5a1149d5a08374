import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { AppError } from '../errors.js';
import { errorSchema } from '../http/errors.js';
import { imageUrl, itemImageSvg } from './catalog.js';
import type { Ids } from './ids.js';
import type { Sales } from './sales.js';

const SaleBody = Type.Object({
  id: Type.String(),
  started_at: Type.String({ format: 'date-time' }),
  ends_at: Type.String({ format: 'date-time' }),
  total_items: Type.Integer(),
  items_sold: Type.Integer(),
  items_remaining: Type.Integer(),
});
const errors = { '4xx': errorSchema, '5xx': errorSchema };
const SaleParams = Type.Object({ sale_id: Type.String({ maxLength: 32, description: 'must be a sale id' }) });

export function saleRoutes(app: FastifyInstance, deps: { ids: Ids; sales: Sales; saleItems: number }) {
  const { ids, sales } = deps;
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  async function saleOr404(saleId: string) {
    const sale = ids.windowOf(saleId) && (await sales.info(saleId));
    if (!sale) throw new AppError('SALE_NOT_FOUND', saleId);
    return sale;
  }

  api.get('/sales/active', {
    config: { name: 'sale_active' },
    schema: { summary: 'The sale running now', response: { 200: SaleBody, ...errors } },
    handler: async () => saleOr404((await sales.active()).id),
  });

  api.get('/sales/:sale_id', {
    config: { name: 'sale' },
    schema: { summary: 'Any sale, past or present', params: SaleParams, response: { 200: SaleBody, ...errors } },
    handler: async (request) => saleOr404(request.params.sale_id),
  });

  api.get('/sales/:sale_id/items', {
    config: { name: 'sale_items' },
    schema: {
      summary: "A page of a sale's items, with whether each is sold",
      params: SaleParams,
      // Decimal digits only: Ajv's number coercion turns 5,000 nines into
      // Infinity, which slips past `maximum`, and also accepts 0x10 and 1e3.
      querystring: Type.Object({
        offset: Type.String({
          pattern: '^0*\\d{1,8}$',
          maxLength: 16,
          default: '0',
          description: 'must be an integer from 0 to 99999999',
        }),
        limit: Type.String({
          pattern: '^0*(1000|[1-9]\\d{0,2})$',
          maxLength: 16,
          default: '100',
          description: 'must be an integer from 1 to 1000',
        }),
      }),
      response: {
        200: Type.Object({
          items: Type.Array(
            Type.Object({ id: Type.String(), name: Type.String(), image_url: Type.String(), sold: Type.Boolean() }),
          ),
          offset: Type.Integer(),
          limit: Type.Integer(),
          total: Type.Integer(),
        }),
        ...errors,
      },
    },
    handler: async (request) => {
      const offset = Number(request.query.offset);
      const limit = Number(request.query.limit);
      const sale = await saleOr404(request.params.sale_id);
      const rows = await sales.items(sale.id, offset, limit);
      return {
        items: rows.map((r) => ({ ...r, image_url: imageUrl(r.id) })),
        offset,
        limit,
        total: sale.total_items,
      };
    },
  });

  api.get('/items/:id/image.svg', {
    config: { name: 'item_image' },
    schema: {
      summary: "An item's generated picture",
      params: Type.Object({ id: Type.String({ pattern: ids.patterns.itemId, description: 'must be an item id' }) }),
    },
    handler: async (request, reply) => {
      const { saleId, index } = ids.parseItemId(request.params.id);
      if (!ids.windowOf(saleId) || index >= deps.saleItems) throw new AppError('ITEM_NOT_FOUND', request.params.id);
      // The picture is a pure function of the id: cache it forever.
      return reply
        .type('image/svg+xml')
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(itemImageSvg(request.params.id));
    },
  });
}
