/**
 * All SQL goes through here: every query is timed into
 * db_query_duration_seconds{query_type,table} and failures are counted.
 * Every statement is parameterised; no caller builds SQL from input.
 *
 * The group commit's inserts, run hundreds of times a second, are named
 * prepared statements: PostgreSQL parses and plans each once per connection
 * instead of once per batch (docs/ARCHITECTURE.md, decision table).
 * PgBouncer before 1.21 in transaction pooling sends a Bind to a server
 * connection that never saw its Parse; the first such refusal turns names off
 * for this process and the query runs again unnamed (a refused Parse or Bind
 * executes nothing). See docs/operations.md, "PgBouncer and pool sizing".
 */
import pg from 'pg';
import type { Logger } from 'pino';

import type { Config } from '../config.js';
import { unavailable } from '../errors.js';
import { children, type Metrics } from '../metrics/metrics.js';

export type QueryType = 'select' | 'insert' | 'ddl';

/**
 * PostgreSQL's word that the named statement is not on this server connection
 * (26000) or already is (42P05): it is not the connection pg prepared it on.
 */
const statementElsewhere = (err: unknown) => ['26000', '42P05'].includes((err as { code?: string }).code ?? '');

export function createDb(config: Config, metrics: Metrics, log?: Pick<Logger, 'warn'>) {
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DB_POOL_SIZE,
    // A dead server must give a fast error, not a hung request.
    connectionTimeoutMillis: config.DEPENDENCY_TIMEOUT_MS,
    query_timeout: config.DEPENDENCY_TIMEOUT_MS * 2,
    idleTimeoutMillis: 30_000,
    application_name: 'flashsale',
  });
  // An idle client losing its server emits here; the next query reconnects.
  pool.on('error', () => {});

  const failures = children(metrics.dbQueryErrors);
  let named = true;
  type Runner = Pick<pg.Pool, 'query'>;
  const timedOn =
    (runner: Runner) =>
    async <R extends pg.QueryResultRow = Record<string, unknown>>(
      queryType: QueryType,
      table: string,
      text: string,
      values: unknown[] = [],
      /** A name for a statement run hundreds of times a second: prepared once per connection. */
      name?: string,
    ): Promise<pg.QueryResult<R>> => {
      const end = metrics.dbQueryDuration.labels(queryType, table).startTimer();
      try {
        if (name && named) {
          try {
            return await runner.query<R>({ name, text, values });
          } catch (err) {
            if (!statementElsewhere(err)) throw err;
            // Inserts in flight on other connections may be refused too: one warning.
            if (named) {
              named = false;
              log?.warn(
                { err },
                'named prepared statements are off: the pooler in front of PostgreSQL does not keep them',
              );
            }
          }
        }
        return await runner.query<R>(text, values);
      } catch (err) {
        failures(queryType, table).inc();
        throw serverDown(err) ? unavailable('database') : err;
      } finally {
        end();
      }
    };
  const query = timedOn(pool);

  /** Runs fn in one transaction on one connection; its queries are timed too. */
  async function transaction<T>(fn: (q: typeof query) => Promise<T>): Promise<T> {
    const conn = await pool.connect().catch(() => {
      throw unavailable('database');
    });
    try {
      await conn.query('BEGIN');
      const result = await fn(timedOn(conn));
      await conn.query('COMMIT');
      conn.release();
      return result;
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => {});
      conn.release(err instanceof Error ? err : undefined);
      throw err;
    }
  }

  async function ping(timeoutMs: number): Promise<boolean> {
    const timeout = new Promise<false>((resolve) => setTimeout(resolve, timeoutMs, false).unref());
    const probe = query('select', 'none', 'SELECT 1').then(
      () => true,
      () => false,
    );
    return Promise.race([probe, timeout]);
  }

  metrics.produce(
    ['db_connections_active', 'db_connections_idle', 'db_connections_waiting', 'db_connections_max'],
    ([active, idle, waiting, max]) => {
      active.set(pool.totalCount - pool.idleCount);
      idle.set(pool.idleCount);
      waiting.set(pool.waitingCount);
      max.set(config.DB_POOL_SIZE);
    },
  );
  metrics.produce(['db_up'], async ([up]) => up.set((await ping(config.DEPENDENCY_TIMEOUT_MS)) ? 1 : 0));

  return { query, transaction, ping, close: () => pool.end() };
}

export type Db = ReturnType<typeof createDb>;

/**
 * A failure that says the server is unreachable, shutting down or out of
 * connections (SQLSTATE classes 08, 53 and 57, or no SQLSTATE at all: a socket
 * error or timeout), as opposed to a statement PostgreSQL refused.
 */
function serverDown(err: unknown): boolean {
  const sqlState = (err as { code?: unknown }).code;
  return typeof sqlState !== 'string' || !/^[0-9A-Z]{5}$/.test(sqlState) || /^(08|53|57)/.test(sqlState);
}
