/**
 * The Grafana dashboard, as code: the seed's four rows and key panels. The
 * committed JSON (grafana/dashboards/flashsale.json) is generated from this
 * file; test/monitoring.test.ts fails when the two differ
 * (UPDATE_DASHBOARD=1 rewrites it).
 */

/** The Prometheus datasource, by the uid the provisioning file gives it. */
const datasource = { type: 'prometheus', uid: 'prometheus' } as const;

interface Target {
  expr: string;
  legendFormat: string;
}

interface Panel {
  title: string;
  type: 'timeseries' | 'stat' | 'gauge';
  unit: string;
  targets: Target[];
  description?: string;
  max?: number;
}

interface Row {
  title: string;
  panels: Panel[];
}

const q = (expr: string, legendFormat = '') => ({ expr, legendFormat });
const HTTP = 'job="flashsale"';
const SELLING = `${HTTP},handler=~"checkout|purchase"`;

export const rows: Row[] = [
  {
    title: 'Four Golden Signals',
    panels: [
      {
        title: 'Latency: P95 / P50 by handler',
        type: 'timeseries',
        unit: 's',
        targets: [
          q(
            `histogram_quantile(0.95, sum by (le, handler) (rate(http_request_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p95 {{handler}}',
          ),
          q(
            `histogram_quantile(0.50, sum by (le, handler) (rate(http_request_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p50 {{handler}}',
          ),
        ],
      },
      {
        title: 'Traffic: request rate by handler',
        type: 'timeseries',
        unit: 'reqps',
        targets: [q(`sum by (handler) (rate(http_requests_total{${HTTP}}[$__rate_interval]))`, '{{handler}}')],
      },
      {
        title: 'Errors: rate by handler and status',
        type: 'timeseries',
        unit: 'reqps',
        targets: [
          q(
            `sum by (handler, status_code) (rate(http_requests_total{${HTTP},status_code=~"4..|5.."}[$__rate_interval]))`,
            '{{handler}} {{status_code}}',
          ),
        ],
      },
      {
        title: 'Saturation: in flight, shed, event-loop utilisation',
        type: 'timeseries',
        unit: 'short',
        targets: [
          q(`sum(http_requests_in_flight{${HTTP}})`, 'in flight'),
          q(`sum(rate(http_requests_shed_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'shed/s'),
          q(`max(nodejs_eventloop_utilization_ratio{${HTTP}})`, 'event loop busy'),
        ],
      },
    ],
  },
  {
    title: 'Flash Sale Specific',
    panels: [
      {
        title: 'Sale progress',
        type: 'gauge',
        unit: 'percentunit',
        max: 1,
        targets: [q(`max(sale_items_sold{${HTTP}}) / max(sale_items_total{${HTTP}})`, 'sold')],
      },
      {
        title: 'Remaining stock',
        type: 'stat',
        unit: 'short',
        targets: [q(`max(sale_items_total{${HTTP}}) - max(sale_items_sold{${HTTP}})`, 'remaining')],
      },
      {
        title: 'Items sold per second',
        type: 'timeseries',
        unit: 'short',
        targets: [q(`sum(rate(purchase_success_total{${HTTP}}[$__rate_interval]))`, 'sold/s')],
      },
      {
        title: 'Checkout and purchase rates',
        type: 'timeseries',
        unit: 'reqps',
        targets: [
          q(`sum(rate(checkout_attempts_total{${HTTP}}[$__rate_interval]))`, 'checkout attempts'),
          q(`sum(rate(checkout_success_total{${HTTP}}[$__rate_interval]))`, 'checkout success'),
          q(`sum(rate(purchase_attempts_total{${HTTP}}[$__rate_interval]))`, 'purchase attempts'),
          q(`sum(rate(purchase_success_total{${HTTP}}[$__rate_interval]))`, 'purchase success'),
          q(`sum(rate(purchase_replays_total{${HTTP}}[$__rate_interval]))`, 'purchase replays'),
        ],
      },
      {
        title: 'Failures by reason',
        type: 'timeseries',
        unit: 'reqps',
        targets: [
          q(`sum by (reason) (rate(checkout_failure_total{${HTTP}}[$__rate_interval]))`, 'checkout {{reason}}'),
          q(`sum by (reason) (rate(purchase_failure_total{${HTTP}}[$__rate_interval]))`, 'purchase {{reason}}'),
        ],
      },
      {
        title: 'Error budget remaining (99.9% availability, this range)',
        type: 'stat',
        unit: 'percentunit',
        description:
          'Share of the 0.1% error budget not yet spent by 5xx answers to checkout and purchase over the selected range.',
        targets: [
          q(
            `1 - ((sum(increase(http_requests_total{${SELLING},status_code=~"5.."}[$__range])) or vector(0)) / sum(increase(http_requests_total{${SELLING}}[$__range]))) / 0.001`,
            'budget left',
          ),
        ],
      },
    ],
  },
  {
    title: 'Database & Cache',
    panels: [
      {
        title: 'Query latency P95 by query and table',
        type: 'timeseries',
        unit: 's',
        targets: [
          q(
            `histogram_quantile(0.95, sum by (le, query_type, table) (rate(db_query_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            '{{query_type}} {{table}}',
          ),
        ],
      },
      {
        title: 'Connection pool',
        type: 'timeseries',
        unit: 'short',
        targets: [
          q(`sum(db_connections_active{${HTTP}})`, 'active'),
          q(`sum(db_connections_idle{${HTTP}})`, 'idle'),
          q(`sum(db_connections_waiting{${HTTP}})`, 'waiting'),
          q(`sum(db_connections_max{${HTTP}})`, 'max'),
        ],
      },
      {
        title: 'Redis command latency P95 by command',
        type: 'timeseries',
        unit: 's',
        targets: [
          q(
            `histogram_quantile(0.95, sum by (le, command) (rate(redis_command_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            '{{command}}',
          ),
        ],
      },
      {
        title: 'Lock contention',
        type: 'timeseries',
        unit: 'short',
        targets: [
          q(
            `sum by (lock_type) (rate(redis_lock_attempts_total{${HTTP}}[$__rate_interval]))`,
            'attempts/s {{lock_type}}',
          ),
          q(
            `sum by (lock_type) (rate(redis_lock_failure_total{${HTTP}}[$__rate_interval])) or vector(0)`,
            'failures/s {{lock_type}}',
          ),
          q(
            `histogram_quantile(0.95, sum by (le, lock_type) (rate(redis_lock_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'hold p95 {{lock_type}}',
          ),
        ],
      },
      {
        title: 'Dependency errors and drift',
        type: 'timeseries',
        unit: 'short',
        targets: [
          q(`sum(rate(db_query_errors_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'db errors/s'),
          q(`sum(rate(redis_command_errors_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'redis errors/s'),
          q(`sum by (kind) (sale_reconcile_drift_items{${HTTP}})`, 'drift {{kind}}'),
          q(`min(db_up{${HTTP}})`, 'db up'),
          q(`min(redis_up{${HTTP}})`, 'redis up'),
        ],
      },
    ],
  },
  {
    title: 'System Resources',
    panels: [
      {
        title: 'Memory',
        type: 'timeseries',
        unit: 'bytes',
        targets: [
          q(`process_resident_memory_bytes{${HTTP}}`, 'rss {{instance}}'),
          q(`nodejs_heap_size_used_bytes{${HTTP}}`, 'heap used {{instance}}'),
          q(`nodejs_heap_size_limit_bytes{${HTTP}}`, 'heap limit {{instance}}'),
        ],
      },
      {
        title: 'Event loop',
        type: 'timeseries',
        unit: 's',
        targets: [
          q(`nodejs_eventloop_lag_p99_seconds{${HTTP}}`, 'lag p99 {{instance}}'),
          q(`nodejs_eventloop_lag_p50_seconds{${HTTP}}`, 'lag p50 {{instance}}'),
        ],
      },
      {
        title: 'Garbage collection time per second',
        type: 'timeseries',
        unit: 's',
        targets: [q(`sum by (kind) (rate(nodejs_gc_duration_seconds_sum{${HTTP}}[$__rate_interval]))`, '{{kind}}')],
      },
      {
        title: 'CPU and active handles',
        type: 'timeseries',
        unit: 'short',
        description: "Active libuv handles are Node's counterpart of the seed's goroutine count.",
        targets: [
          q(`rate(process_cpu_seconds_total{${HTTP}}[$__rate_interval])`, 'cpu cores {{instance}}'),
          q(`nodejs_active_handles_total{${HTTP}}`, 'active handles {{instance}}'),
        ],
      },
    ],
  },
];

/** Lays the rows out on Grafana's 24-column grid and returns the dashboard model. */
export function dashboard() {
  const panels: object[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    row.panels.forEach((p, i) => {
      panels.push({
        id: id++,
        type: p.type,
        title: p.title,
        ...(p.description ? { description: p.description } : {}),
        datasource,
        gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: y + Math.floor(i / 2) * 8 },
        fieldConfig: {
          defaults: { unit: p.unit, ...(p.max === undefined ? {} : { min: 0, max: p.max }) },
          overrides: [],
        },
        options:
          p.type === 'timeseries'
            ? { legend: { displayMode: 'list', placement: 'bottom' } }
            : { reduceOptions: { calcs: ['lastNotNull'] } },
        targets: p.targets.map((t, n) => ({
          datasource,
          refId: String.fromCharCode(65 + n),
          expr: t.expr,
          legendFormat: t.legendFormat,
        })),
      });
    });
    y += Math.ceil(row.panels.length / 2) * 8;
  }
  return {
    uid: 'flashsale',
    title: 'flashsale',
    tags: ['flashsale'],
    timezone: 'utc',
    schemaVersion: 39,
    version: 1,
    refresh: '5s',
    time: { from: 'now-1h', to: 'now' },
    annotations: { list: [] },
    templating: { list: [] },
    panels,
  };
}
