/**
 * The operator API's tables (`sale_controls`, `admin_audit`, 002_admin.sql)
 * and its read-only views of a sale across `sales`, `purchases` and
 * `checkout_attempts`: every statement the operator API runs.
 *
 * The views filter `checkout_attempts` by sale_id; without an index on it they
 * scan the table (partitioned by sale, they scan one sale's partition). They
 * are for a person at a console, not for traffic: never on the request path.
 */
import type { Db } from './db.js';

export type SaleState = 'open' | 'paused' | 'ended';

export interface AuditEntry {
  actor: string;
  action: string;
  saleId?: string;
  target?: string;
  address: string;
  result: string;
  /** epoch milliseconds */
  at: number;
}

const AUDIT = `INSERT INTO admin_audit (at, actor, action, sale_id, target, address, result)
  VALUES (to_timestamp($1 / 1000.0), $2, $3, $4, $5, $6, $7)`;
const auditValues = (e: AuditEntry) => [
  e.at,
  e.actor,
  e.action,
  e.saleId ?? null,
  e.target ?? null,
  e.address,
  e.result,
];

/** A sale with its state and counts, for the operator's views (one row per sale). */
const SALE_SUMMARY = `SELECT s.id, s.starts_at, s.ends_at, s.total_items, c.state,
    (SELECT count(*) FROM purchases p WHERE p.sale_id = s.id) AS sold,
    (SELECT count(DISTINCT user_id) FROM purchases p WHERE p.sale_id = s.id) AS buyers,
    (SELECT coalesce(json_object_agg(outcome, n), '{}') FROM
       (SELECT outcome, count(*) AS n FROM checkout_attempts a WHERE a.sale_id = s.id GROUP BY outcome) o) AS attempts
  FROM sales s LEFT JOIN sale_controls c ON c.sale_id = s.id`;

export function adminTables(db: Db) {
  return {
    /** States other than open of sales not yet over at `now`: what every instance polls. */
    async unfinishedStates(now: number): Promise<Map<string, Exclude<SaleState, 'open'>>> {
      const { rows } = await db.query<{ sale_id: string; state: Exclude<SaleState, 'open'> }>(
        'select',
        'sale_controls',
        `SELECT c.sale_id, c.state FROM sale_controls c JOIN sales s ON s.id = c.sale_id
         WHERE c.state <> 'open' AND s.ends_at > to_timestamp($1 / 1000.0)`,
        [now],
      );
      return new Map(rows.map((r) => [r.sale_id, r.state]));
    },

    /**
     * Sets a sale's state and audits it in one transaction. An ended sale stays
     * ended: returns the state the sale has afterwards ('ended' when refused).
     */
    setState: (saleId: string, state: SaleState, audit: AuditEntry): Promise<SaleState> =>
      db.transaction(async (q) => {
        const { rows } = await q<{ state: SaleState }>(
          'insert',
          'sale_controls',
          `INSERT INTO sale_controls (sale_id, state, changed_at, changed_by)
           VALUES ($1, $2, to_timestamp($3 / 1000.0), $4)
           ON CONFLICT (sale_id) DO UPDATE SET state = EXCLUDED.state, changed_at = EXCLUDED.changed_at,
             changed_by = EXCLUDED.changed_by
           WHERE sale_controls.state <> 'ended'
           RETURNING state`,
          [saleId, state, audit.at, audit.actor],
        );
        const after = rows[0]?.state ?? 'ended';
        const result = after === state ? audit.result : 'SALE_ENDED';
        await q('insert', 'admin_audit', AUDIT, auditValues({ ...audit, result }));
        return after;
      }),

    audit: (entry: AuditEntry) => db.query('insert', 'admin_audit', AUDIT, auditValues(entry)).then(() => undefined),

    async listAudit(saleId: string) {
      const { rows } = await db.query<{
        at: Date;
        actor: string;
        action: string;
        target: string | null;
        address: string;
        result: string;
      }>(
        'select',
        'admin_audit',
        'SELECT at, actor, action, target, address, result FROM admin_audit WHERE sale_id = $1 ORDER BY id',
        [saleId],
      );
      return rows;
    },

    /** The latest sales (starting before `now`, or the next one), with their counts. */
    async listSales(now: number, limit: number) {
      const { rows } = await db.query<SaleSummaryRow>(
        'select',
        'sales',
        `${SALE_SUMMARY}
         WHERE s.starts_at <= to_timestamp($1 / 1000.0) + (s.ends_at - s.starts_at)
         ORDER BY s.starts_at DESC LIMIT $2`,
        [now, limit],
      );
      return rows;
    },

    async saleSummary(saleId: string): Promise<SaleSummaryRow | undefined> {
      const { rows } = await db.query<SaleSummaryRow>('select', 'sales', `${SALE_SUMMARY} WHERE s.id = $1`, [saleId]);
      return rows[0];
    },

    /** Attempts, codes issued and purchases per minute. */
    async timeline(saleId: string) {
      const { rows } = await db.query<{ minute: Date; attempts: string; codes: string; purchases: string }>(
        'select',
        'checkout_attempts',
        `SELECT minute, sum(attempts) AS attempts, sum(codes) AS codes, sum(purchases) AS purchases FROM (
           SELECT date_trunc('minute', attempted_at) AS minute, count(*) AS attempts,
                  count(*) FILTER (WHERE outcome = 'OK') AS codes, 0 AS purchases
           FROM checkout_attempts a WHERE a.sale_id = $1 GROUP BY 1
           UNION ALL
           SELECT date_trunc('minute', purchased_at), 0, 0, count(*) FROM purchases WHERE sale_id = $1 GROUP BY 1
         ) t GROUP BY minute ORDER BY minute`,
        [saleId],
      );
      return rows;
    },

    /** The users with the most checkout attempts (bots stand out), with what they bought. */
    async topUsers(saleId: string, limit: number) {
      const { rows } = await db.query<{ user_id: string; attempts: string; codes: string; purchases: string }>(
        'select',
        'checkout_attempts',
        `SELECT a.user_id, count(*) AS attempts, count(*) FILTER (WHERE a.outcome = 'OK') AS codes,
                (SELECT count(*) FROM purchases p WHERE p.sale_id = $1 AND p.user_id = a.user_id) AS purchases
         FROM checkout_attempts a WHERE a.sale_id = $1
         GROUP BY a.user_id ORDER BY attempts DESC, a.user_id LIMIT $2`,
        [saleId, limit],
      );
      return rows;
    },

    /** What one user did in a sale: the latest attempts (at most `limit`) and every purchase. */
    async userInSale(saleId: string, userId: string, limit: number) {
      const [attempts, purchases] = await Promise.all([
        db.query<{ item_id: string; outcome: string; code: string | null; attempted_at: Date }>(
          'select',
          'checkout_attempts',
          `SELECT item_id, outcome, code, attempted_at FROM checkout_attempts a
           WHERE a.sale_id = $1 AND a.user_id = $2 ORDER BY attempted_at DESC, id DESC LIMIT $3`,
          [saleId, userId, limit],
        ),
        db.query<{ item_id: string; code: string; purchased_at: Date }>(
          'select',
          'purchases',
          'SELECT item_id, code, purchased_at FROM purchases WHERE sale_id = $1 AND user_id = $2 ORDER BY slot',
          [saleId, userId],
        ),
      ]);
      return { attempts: attempts.rows, purchases: purchases.rows };
    },
  };
}

export interface SaleSummaryRow {
  id: string;
  starts_at: Date;
  ends_at: Date;
  total_items: number;
  state: SaleState | null;
  sold: string;
  buyers: string;
  attempts: Record<string, string | number>;
}

export type AdminTables = ReturnType<typeof adminTables>;
