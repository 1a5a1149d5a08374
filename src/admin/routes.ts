/**
 * The operator API under /admin/: its own credentials (credentials.ts), every
 * authenticated request audited (admin_audit) and counted by action and
 * result. registerAdmin() is app.ts's one call: it builds the parts, the
 * checkout and purchase gates (state.ts) and these routes.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import { adminTables } from '../db/admin.js';
import { AppError } from '../errors.js';
import { sendError } from '../http/errors.js';
import { queryInteger, responses, USER_ID, USER_ID_RULE } from '../http/schemas.js';
import type { Infra } from '../infra.js';
import { ADMIN_ACTIONS, children } from '../metrics/metrics.js';
import { createAdmin, type Action, type Admin, type Operator } from './admin.js';
import { createCredentials, type Credentials } from './credentials.js';
import { createSaleStates, registerSaleStates } from './state.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The operator an /admin/ request was admitted as. */
    operator: Operator | null;
  }
}

const security = [{ adminToken: [] }];
const SaleParams = Type.Object({
  sale_id: Type.String({ maxLength: 32, description: 'must be a sale id' }),
});
const UserParams = Type.Object({
  sale_id: Type.String({ maxLength: 32, description: 'must be a sale id' }),
  user_id: Type.String({ pattern: USER_ID, description: USER_ID_RULE }),
});
const Counts = {
  id: Type.String(),
  started_at: Type.String({ format: 'date-time' }),
  ends_at: Type.String({ format: 'date-time' }),
  state: Type.Union([Type.Literal('upcoming'), Type.Literal('open'), Type.Literal('paused'), Type.Literal('ended')]),
  total_items: Type.Integer(),
  items_sold: Type.Integer(),
  buyers: Type.Integer({ description: 'users who bought at least one item' }),
  attempts: Type.Record(Type.String(), Type.Integer(), {
    description: 'checkout attempts by outcome (OK or the error code answered)',
  }),
};
const refusals = {
  UNAUTHENTICATED: 'no operator token, or one that is not in ADMIN_TOKENS and not a valid operator JWT',
  FORBIDDEN: "a valid JWT without the operator role (a buyer's)",
  UNAVAILABLE: "PostgreSQL (or, for a JWT, the identity provider's keys) is unavailable",
} as const;
const badSale = '`sale_id` is over 32 characters';
const noSale = 'no sale has this id';

export function registerAdmin(app: FastifyInstance, infra: Infra) {
  const admin = adminTables(infra.db);
  const states = createSaleStates({ ...infra, admin });
  registerSaleStates(app, states);
  const credentials = createCredentials(infra.config, app.auth.verifier);
  adminRoutes(app, { admin: createAdmin({ ...infra, admin, states }), credentials, metrics: infra.metrics });
}

function adminRoutes(
  app: FastifyInstance,
  deps: { admin: Admin; credentials: Credentials; metrics: Infra['metrics'] },
) {
  const { admin, credentials } = deps;
  const counted = children(deps.metrics.adminRequests);
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  app.decorateRequest('operator', null);

  /** preValidation: nobody learns anything about the API, not even its validation, without credentials. */
  const admit = (action: (typeof ADMIN_ACTIONS)[number]) => async (request: FastifyRequest, reply: FastifyReply) => {
    const admitted = await credentials.admit(request);
    if ('actor' in admitted) {
      request.operator = { actor: admitted.actor, address: request.ip };
      return;
    }
    const { refused, challenge } = admitted;
    counted(
      action,
      refused.code === 'UNAUTHENTICATED' ? 'unauthenticated' : refused.code === 'FORBIDDEN' ? 'forbidden' : 'error',
    ).inc();
    request.log.warn({ action, address: request.ip, refused: refused.code }, 'operator request refused');
    if (challenge) reply.header('www-authenticate', challenge);
    return sendError(reply, refused);
  };

  /** Runs an admitted request: counted, and audited (a change audits itself, with the change). */
  async function operate<T>(
    request: FastifyRequest,
    action: (typeof ADMIN_ACTIONS)[number],
    where: { saleId?: string; target?: string },
    work: () => Promise<T>,
  ): Promise<T> {
    const who = request.operator!;
    const read = !['pause', 'resume', 'end'].includes(action);
    try {
      const result = await work();
      if (read) await admin.audited({ ...who, ...where, action, result: 'OK', at: Date.now() });
      counted(action, 'ok').inc();
      return result;
    } catch (err) {
      const code = err instanceof AppError ? err.code : 'INTERNAL';
      if (read) await admin.audited({ ...who, ...where, action, result: code, at: Date.now() }).catch(() => {});
      counted(action, err instanceof AppError && err.status < 500 ? 'refused' : 'error').inc();
      throw err;
    }
  }

  api.get('/admin/sales', {
    config: { name: 'admin_sales' },
    preValidation: admit('list'),
    schema: {
      summary: 'Recent sales (and the next one) with their counts and state',
      security,
      querystring: Type.Object({ limit: queryInteger({ minimum: 1, maximum: 100, default: 24 }) }),
      response: responses(
        { 200: Type.Object({ sales: Type.Array(Type.Object(Counts)) }, { description: 'Newest first' }) },
        { INVALID_REQUEST: '`limit` is not an integer from 1 to 100', ...refusals },
      ),
    },
    handler: (request) => operate(request, 'list', {}, () => admin.sales(request.query.limit ?? 24)),
  });

  api.get('/admin/sales/:sale_id', {
    config: { name: 'admin_sale' },
    preValidation: admit('sale'),
    schema: {
      summary: 'One sale: counts, a per-minute timeline, the users with the most attempts',
      security,
      params: SaleParams,
      response: responses(
        {
          200: Type.Object(
            {
              ...Counts,
              timeline: Type.Array(
                Type.Object({
                  minute: Type.String({ format: 'date-time' }),
                  attempts: Type.Integer(),
                  codes: Type.Integer({ description: 'attempts answered with a code' }),
                  purchases: Type.Integer(),
                }),
              ),
              top_users: Type.Array(
                Type.Object({
                  user_id: Type.String(),
                  attempts: Type.Integer(),
                  codes: Type.Integer(),
                  purchases: Type.Integer(),
                }),
                { description: 'the 20 users with the most checkout attempts (bots stand out)' },
              ),
            },
            { description: 'The sale, read from PostgreSQL' },
          ),
        },
        { INVALID_REQUEST: badSale, SALE_NOT_FOUND: noSale, ...refusals },
      ),
    },
    handler: (request) =>
      operate(request, 'sale', { saleId: request.params.sale_id }, () => admin.sale(request.params.sale_id)),
  });

  api.get('/admin/sales/:sale_id/users/:user_id', {
    config: { name: 'admin_user' },
    preValidation: admit('user'),
    schema: {
      summary: 'What one user did in a sale: attempts with outcomes and codes, and purchases',
      security,
      params: UserParams,
      response: responses(
        {
          200: Type.Object(
            {
              sale_id: Type.String(),
              user_id: Type.String(),
              attempts: Type.Array(
                Type.Object({
                  item_id: Type.String(),
                  outcome: Type.String(),
                  code: Type.Union([Type.String(), Type.Null()]),
                  attempted_at: Type.String({ format: 'date-time' }),
                }),
                { description: 'newest first, at most 1000' },
              ),
              purchases: Type.Array(
                Type.Object({
                  item_id: Type.String(),
                  code: Type.String(),
                  purchased_at: Type.String({ format: 'date-time' }),
                }),
              ),
            },
            { description: "The user's attempts and purchases in the sale (empty lists for a user who did nothing)" },
          ),
        },
        {
          INVALID_REQUEST: '`sale_id` is over 32 characters, or `user_id` is malformed',
          SALE_NOT_FOUND: noSale,
          ...refusals,
        },
      ),
    },
    handler: (request) => {
      const { sale_id: saleId, user_id: userId } = request.params;
      return operate(request, 'user', { saleId, target: userId }, () => admin.user(saleId, userId));
    },
  });

  const changes: Record<Action, string> = {
    pause:
      'Pause a sale: within a second every instance answers its checkouts and purchases 503 `SALE_PAUSED` (a purchase already confirmed still replays)',
    resume: 'Resume a paused sale',
    end: 'End a sale for good, as if its window had passed (checkout answers 410 `SALE_ENDED`)',
  };
  for (const action of ['pause', 'resume', 'end'] as const) {
    api.post(`/admin/sales/:sale_id/${action}`, {
      config: { name: `admin_${action}` },
      preValidation: admit(action),
      schema: {
        summary: changes[action],
        security,
        params: SaleParams,
        response: responses(
          {
            200: Type.Object(
              {
                sale_id: Type.String(),
                state: Type.Union([Type.Literal('open'), Type.Literal('paused'), Type.Literal('ended')]),
              },
              { description: 'The state the sale is in now, recorded in PostgreSQL with its audit row' },
            ),
          },
          {
            INVALID_REQUEST: badSale,
            SALE_NOT_FOUND: noSale,
            SALE_ENDED: 'the sale has ended (by `end` or its window): that is final',
            ...refusals,
          },
        ),
      },
      handler: (request) => {
        const saleId = request.params.sale_id;
        return operate(request, action, { saleId }, () => admin.change(saleId, action, request.operator!));
      },
    });
  }
}
