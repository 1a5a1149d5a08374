import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { AppError } from '../errors.js';
import { queryInteger, responses } from '../http/schemas.js';
import { imageUrl, itemImageSvg } from './catalog.js';
import type { Ids } from './ids.js';
import type { Sales } from './sales.js';
import { createSaleSizes } from './sizes.js';

const SaleBody = Type.Object(
  {
    id: Type.String(),
    started_at: Type.String({ format: 'date-time' }),
    ends_at: Type.String({ format: 'date-time' }),
    total_items: Type.Integer(),
    items_sold: Type.Integer(),
    items_remaining: Type.Integer(),
  },
  { description: 'The sale, its counts read from PostgreSQL' },
);
const SaleParams = Type.Object({ sale_id: Type.String({ maxLength: 32, description: 'must be a sale id' }) });
const database = 'PostgreSQL is unavailable';
const noSale = 'no sale has this id';
const longId = '`sale_id` is over 32 characters';
/** Served forever: the picture is a pure function of the id, and an item never stops existing. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

export function saleRoutes(app: FastifyInstance, deps: { ids: Ids; sales: Sales }) {
  const { ids, sales } = deps;
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const totalItems = createSaleSizes(sales);

  async function saleOr404(saleId: string) {
    const sale = ids.windowOfSale(saleId) && (await sales.info(saleId));
    if (!sale) throw new AppError('SALE_NOT_FOUND', saleId);
    return sale;
  }

  api.get('/sales/active', {
    config: { name: 'sale_active' },
    schema: { summary: 'The sale running now', response: responses({ 200: SaleBody }, { UNAVAILABLE: database }) },
    handler: async () => saleOr404((await sales.active()).id),
  });

  api.get('/sales/:sale_id', {
    config: { name: 'sale' },
    schema: {
      summary: 'Any sale, past or present',
      params: SaleParams,
      response: responses(
        { 200: SaleBody },
        { INVALID_REQUEST: longId, SALE_NOT_FOUND: noSale, UNAVAILABLE: database },
      ),
    },
    handler: async (request) => saleOr404(request.params.sale_id),
  });

  api.get('/sales/:sale_id/items', {
    config: { name: 'sale_items' },
    schema: {
      summary: "A page of a sale's items, with whether each is sold",
      params: SaleParams,
      querystring: Type.Object({
        offset: queryInteger({ minimum: 0, maximum: 99_999_999, default: 0 }),
        limit: queryInteger({ minimum: 1, maximum: 1000, default: 100 }),
      }),
      response: responses(
        {
          200: Type.Object(
            {
              items: Type.Array(
                Type.Object({ id: Type.String(), name: Type.String(), image_url: Type.String(), sold: Type.Boolean() }),
              ),
              offset: Type.Integer(),
              limit: Type.Integer(),
              total: Type.Integer({ description: "the sale's number of items" }),
            },
            { description: 'The page, in item order' },
          ),
        },
        {
          INVALID_REQUEST: `\`offset\` or \`limit\` is not an integer in its range (\`field\` names it), or ${longId}`,
          SALE_NOT_FOUND: noSale,
          UNAVAILABLE: database,
        },
      ),
    },
    handler: async (request) => {
      // Validation has set the defaults of absent parameters.
      const { offset, limit } = request.query as { offset: number; limit: number };
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
      response: responses(
        {
          200: {
            description: 'The picture, the same for ever',
            headers: { 'cache-control': { type: 'string', enum: [IMMUTABLE] } },
            content: { 'image/svg+xml': { schema: { type: 'string' } } },
          },
        },
        {
          INVALID_REQUEST: '`id` is not an item id',
          ITEM_NOT_FOUND: 'no sale, past or present, has this item',
          UNAVAILABLE: `${database} (only while this instance has not yet seen the item's sale)`,
        },
      ),
    },
    handler: async (request, reply) => {
      const { saleId, index } = ids.parseItemId(request.params.id);
      const total = ids.windowOfSale(saleId) && (await totalItems(saleId));
      if (!total || index >= total) throw new AppError('ITEM_NOT_FOUND', `${request.params.id} does not exist`);
      return reply.type('image/svg+xml').header('cache-control', IMMUTABLE).send(itemImageSvg(request.params.id));
    },
  });
}
