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
  /** A unit other than the panel's: the series gets its own axis, on the right. */
  unit?: string;
}

interface Panel {
  title: string;
  type: 'timeseries' | 'stat' | 'gauge';
  unit: string;
  targets: Target[];
  description?: string;
  max?: number;
  /** Ask for the last value only: for stats whose query is too heavy to run at every step of the range. */
  instant?: boolean;
}

interface Row {
  title: string;
  panels: Panel[];
}

const q = (expr: string, legendFormat = '', unit?: string): Target => ({
  expr,
  legendFormat,
  ...(unit ? { unit } : {}),
});
const JOB = 'job="flashsale"';
/** Every panel's selector: the job, narrowed by the dashboard's environment and instance variables. */
const HTTP = `${JOB},environment=~"$environment",instance=~"$instance"`;
const SELLING = `${HTTP},handler=~"checkout|purchase"`;
/** Users' requests: what FlashsaleHighErrorRate counts. */
const USERS = `${HTTP},handler!~"health|metrics"`;
/** Instances whose reconciliation drift gauge is current: they completed a pass in the last minute. */
const FRESH_PASS = `on (job, instance) (time() - sale_reconcile_last_run_timestamp_seconds{${HTTP}} < 60)`;
/** A 5xx share that is 0, not missing, before the first 5xx series exists. */
const share = (selector: string, by = '') =>
  `(sum${by} (rate(http_requests_total{${selector},status_code=~"5.."}[$__rate_interval])) or 0 * sum${by} (rate(http_requests_total{${selector}}[$__rate_interval]))) / sum${by} (rate(http_requests_total{${selector}}[$__rate_interval]))`;
/**
 * Remaining share of a 30-day budget, from the SLO rules' per-job 5-minute
 * rates: the SLO is the whole job's, so the instance and environment
 * variables do not narrow it.
 */
const budgetLeft = (spent: string, allowed: number) =>
  `1 - (sum(sum_over_time(flashsale:${spent}:rate5m{${JOB}}[30d])) / sum(sum_over_time(flashsale:slo_requests:rate5m{${JOB}}[30d]))) / ${allowed}`;

/** A query variable over the values of one label of the job's `up` series; All matches any value. */
const variable = (name: string, match: string, multi: boolean) => {
  const query = `label_values(up{${match}}, ${name})`;
  return {
    type: 'query',
    name,
    label: name,
    datasource,
    query: { qryType: 1, query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    definition: query,
    refresh: 2, // on time range change: instances come and go
    multi,
    includeAll: true,
    allValue: '.*',
    current: { text: 'All', value: '$__all' },
    options: [],
    regex: '',
    sort: 1,
    hide: 0,
  };
};
/** The dashboard's variables: an environment, then the instances of it (several, or All). */
export const variables = [
  variable('environment', JOB, false),
  variable('instance', `${JOB},environment=~"$environment"`, true),
];

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
        title: 'Errors: share of requests answered 5xx',
        type: 'timeseries',
        unit: 'percentunit',
        description:
          "All users' requests (everything but /health and /metrics), as FlashsaleHighErrorRate counts them (it fires above 5%), and checkout and purchase alone, as the availability SLO counts them (its budget is 0.1%).",
        targets: [q(share(USERS), 'all but health, metrics'), q(share(SELLING, ' by (handler)'), '{{handler}}')],
      },
      {
        title: 'Saturation: requests in flight and shed',
        type: 'timeseries',
        unit: 'short',
        description: 'Requests being served (all instances), and requests refused by the in-flight cap per second.',
        targets: [
          q(`sum(http_requests_in_flight{${HTTP}})`, 'in flight'),
          q(`sum(rate(http_requests_shed_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'shed/s', 'reqps'),
        ],
      },
      {
        title: 'Saturation: event-loop utilisation',
        type: 'timeseries',
        unit: 'percentunit',
        max: 1,
        description:
          "Share of time the busiest instance's event loop was busy between two scrapes: a Node process saturates at 100%.",
        targets: [q(`max(nodejs_eventloop_utilization_ratio{${HTTP}})`, 'busiest instance')],
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
        title: 'Auth rejections by reason, and operator API requests',
        type: 'timeseries',
        unit: 'reqps',
        description:
          'With AUTH=jwt: buyer requests refused, by reason (401 for a bad or missing token, 403 user_mismatch and code_owner, 503 keys_unavailable); FlashsaleAuthRejectionsSpike fires on their sum. Then requests to /admin/ by action and result (a series appears with its first request): refused ones (unauthenticated, forbidden) are probes; pause, resume and end are the kill switch being used (docs/security.md).',
        targets: [
          q(`sum by (reason) (rate(auth_rejections_total{${HTTP}}[$__rate_interval]))`, 'auth {{reason}}'),
          q(
            `sum by (action, result) (rate(admin_requests_total{${HTTP}}[$__rate_interval]))`,
            'admin {{action}} {{result}}',
          ),
        ],
      },
      {
        title: 'Error budgets remaining (last 30 days)',
        type: 'stat',
        unit: 'percentunit',
        instant: true,
        description:
          'Share of the 30-day budgets of checkout and purchase left now: availability allows 0.1% of requests to answer 5xx, latency 1% to take over 250 ms. Below 0 the SLO is missed. Computed from the SLO recording rules (monitoring/prometheus/rules/slo.yml), over the last 30 days or as much of them as Prometheus holds. For the whole job: the environment and instance selectors do not apply.',
        targets: [q(budgetLeft('slo_errors', 0.001), 'availability'), q(budgetLeft('slo_slow', 0.01), 'latency')],
      },
    ],
  },
  {
    title: 'Database & Cache',
    panels: [
      // Database growth and attempts retention (src/retention/).
      {
        title: 'Database and table sizes',
        type: 'timeseries',
        unit: 'bytes',
        description:
          'PostgreSQL database size, and each table with its indexes (checkout_attempts sums its partitions). Every instance reports the same database: max, not sum.',
        targets: [
          q(`max(db_database_size_bytes{${HTTP}})`, 'database'),
          q(`max by (table) (db_table_size_bytes{${HTTP}})`, '{{table}}'),
        ],
      },
      {
        title: 'checkout_attempts partitions and oldest sale age',
        type: 'timeseries',
        unit: 'short',
        description:
          'Partitions (attached, and retired ones waiting for their archive), and the age of the oldest sale still held, in hours, against ATTEMPTS_RETENTION.',
        targets: [
          q(`max(db_attempts_partitions{${HTTP}})`, 'partitions'),
          q(`max(db_attempts_oldest_partition_age_seconds{${HTTP}}) / 3600`, 'oldest sale (h)'),
          q(`max(db_attempts_retention_seconds{${HTTP}}) / 3600`, 'retention (h)'),
        ],
      },
      {
        title: 'Archives and rows retired',
        type: 'timeseries',
        unit: 'short',
        description:
          'Archive runs by outcome (a failure keeps the partition), bytes of archives written and rows archived and dropped, per hour.',
        targets: [
          q(`sum by (outcome) (increase(attempts_archive_runs_total{${HTTP}}[1h]))`, 'archives {{outcome}}'),
          q(`sum(increase(attempts_archive_bytes_total{${HTTP}}[1h]))`, 'bytes archived'),
          q(`sum(increase(attempts_rows_retired_total{${HTTP}}[1h]))`, 'rows retired'),
        ],
      },
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
        title: 'Lock contention: attempts that found the lock taken',
        type: 'timeseries',
        unit: 'percentunit',
        description:
          'By lock type. High for reconcile and rebuild by design when several instances run (one wins each round, the others skip or wait); for purchase it means requests racing on one code, and FlashsaleLockContention fires above 20%.',
        targets: [
          q(
            `(sum by (lock_type) (rate(redis_lock_failure_total{${HTTP},reason="contended"}[$__rate_interval])) or 0 * sum by (lock_type) (rate(redis_lock_attempts_total{${HTTP}}[$__rate_interval]))) / sum by (lock_type) (rate(redis_lock_attempts_total{${HTTP}}[$__rate_interval]))`,
            '{{lock_type}}',
          ),
        ],
      },
      {
        title: 'Lock attempts and failures',
        type: 'timeseries',
        unit: 'ops',
        targets: [
          q(
            `sum by (lock_type) (rate(redis_lock_attempts_total{${HTTP}}[$__rate_interval]))`,
            'attempts {{lock_type}}',
          ),
          q(
            `sum by (lock_type, reason) (rate(redis_lock_failure_total{${HTTP}}[$__rate_interval])) or vector(0)`,
            'failures {{lock_type}} {{reason}}',
          ),
        ],
      },
      {
        title: 'Lock hold time P95',
        type: 'timeseries',
        unit: 's',
        description: 'The reconcile lock is never released (it expires, so the others skip the round): no hold time.',
        targets: [
          q(
            `histogram_quantile(0.95, sum by (le, lock_type) (rate(redis_lock_duration_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            '{{lock_type}}',
          ),
        ],
      },
      {
        title: 'Dependency errors and up',
        type: 'timeseries',
        unit: 'ops',
        description: 'Failed queries and commands per second; up is 1 while every instance reaches the dependency.',
        targets: [
          q(`sum(rate(db_query_errors_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'db errors/s'),
          q(`sum(rate(redis_command_errors_total{${HTTP}}[$__rate_interval])) or vector(0)`, 'redis errors/s'),
          q(`min(db_up{${HTTP}})`, 'db up', 'bool_yes_no'),
          q(`min(redis_up{${HTTP}})`, 'redis up', 'bool_yes_no'),
        ],
      },
      {
        title: 'Reconciler: drift found and time since the last pass',
        type: 'timeseries',
        unit: 'short',
        description:
          'Items on which Redis disagreed with PostgreSQL (repaired), from instances that completed a pass in the last minute (the others keep an old value); and how long ago any instance completed one (FlashsaleReconcilerStalled fires above 5 minutes).',
        targets: [
          q(`max by (kind) (sale_reconcile_drift_items{${HTTP}} and ${FRESH_PASS})`, 'drift {{kind}}'),
          q(`time() - max(sale_reconcile_last_run_timestamp_seconds{${HTTP}})`, 'since the last pass', 's'),
        ],
      },
      {
        title: 'Live event streams',
        type: 'timeseries',
        unit: 'short',
        description:
          'Streams open on GET /sales/active/events (all instances, each capped by MAX_STREAMS), events written to them per second, and streams the service ended: too slow to read (slow_client) or a drain (shutdown).',
        targets: [
          q(`sum(sse_clients{${HTTP}})`, 'streams open'),
          q(`sum(rate(sse_events_sent_total{${HTTP}}[$__rate_interval]))`, 'events/s', 'ops'),
          q(
            `sum by (reason) (rate(sse_clients_dropped_total{${HTTP}}[$__rate_interval]))`,
            'ended/s {{reason}}',
            'ops',
          ),
        ],
      },
      {
        title: 'Live event streams: broadcast lag',
        type: 'timeseries',
        unit: 's',
        description:
          "From the start of a broadcaster's read of the sale to its event written to every stream, p99 and p50 (one broadcast per STREAM_INTERVAL_MS per instance while streams are open).",
        targets: [
          q(
            `histogram_quantile(0.99, sum by (le) (rate(sse_broadcast_lag_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p99',
          ),
          q(
            `histogram_quantile(0.50, sum by (le) (rate(sse_broadcast_lag_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p50',
          ),
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
        title: 'Garbage collection: share of time',
        type: 'timeseries',
        unit: 'percentunit',
        description: 'Seconds spent in GC per second, by kind, summed over instances.',
        targets: [q(`sum by (kind) (rate(nodejs_gc_duration_seconds_sum{${HTTP}}[$__rate_interval]))`, '{{kind}}')],
      },
      {
        title: 'CPU and active handles',
        type: 'timeseries',
        unit: 'short',
        description:
          "CPU as a share of one core (above 100% counts V8's and libuv's helper threads). Active libuv handles are Node's counterpart of the seed's goroutine count.",
        targets: [
          q(`rate(process_cpu_seconds_total{${HTTP}}[$__rate_interval])`, 'cpu {{instance}}', 'percentunit'),
          q(`nodejs_active_handles_total{${HTTP}}`, 'active handles {{instance}}'),
        ],
      },
    ],
  },
  {
    // The waiting room (docs/waiting-room.md); flat at 0 while WAITING_ROOM=off.
    title: 'Waiting room',
    panels: [
      {
        title: 'People waiting and admitted',
        type: 'timeseries',
        unit: 'short',
        description:
          "The room's shared counters as each instance last read them (max over instances): waiting in the running sale, in the next sale's pre-queue, and admitted so far (now serving).",
        targets: [
          q(`max(queue_waiting{${HTTP}})`, 'waiting'),
          q(`max(queue_prequeue_size{${HTTP}})`, 'pre-queue'),
          q(`max(queue_now_serving{${HTTP}})`, 'now serving'),
        ],
      },
      {
        title: 'Admission rate: target and actual',
        type: 'timeseries',
        unit: 'short',
        description:
          "Target: the admitting instance's rate (ADMIT_PER_SEC, or the adaptive controller's output). Actual: admissions per second; below target when the stock bound or an empty queue holds it back.",
        targets: [
          q(`sum(queue_admission_rate_target{${HTTP}} * queue_admission_leader{${HTTP}})`, 'target/s'),
          q(`sum(rate(queue_admitted_total{${HTTP}}[$__rate_interval]))`, 'actual/s'),
        ],
      },
      {
        title: 'Joins and status polls',
        type: 'timeseries',
        unit: 'reqps',
        targets: [
          q(`sum by (outcome) (rate(queue_joins_total{${HTTP}}[$__rate_interval]))`, 'joins {{outcome}}'),
          q(`sum(rate(queue_polls_total{${HTTP}}[$__rate_interval]))`, 'polls'),
        ],
      },
      {
        title: 'Rejections by route and reason',
        type: 'timeseries',
        unit: 'reqps',
        description: 'TICKET_INVALID rising: an attack, or a secret rotation without WAITING_ROOM_PREVIOUS_SECRET.',
        targets: [
          q(`sum by (route, reason) (rate(queue_rejections_total{${HTTP}}[$__rate_interval]))`, '{{route}} {{reason}}'),
        ],
      },
      {
        title: 'Join to admission: P50 / P95',
        type: 'timeseries',
        unit: 's',
        description: "From a person's join to their first admitted checkout (observed by the instance serving it).",
        targets: [
          q(
            `histogram_quantile(0.5, sum by (le) (rate(queue_join_to_admission_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p50',
          ),
          q(
            `histogram_quantile(0.95, sum by (le) (rate(queue_join_to_admission_seconds_bucket{${HTTP}}[$__rate_interval])))`,
            'p95',
          ),
        ],
      },
      {
        title: 'Adaptive admission: controller inputs',
        type: 'timeseries',
        unit: 'short',
        description:
          "The admitting instance's inputs (ADMISSION_MODE=adaptive): share of requests shed and checkout p99 in its last window. Either over its limit halves the rate.",
        targets: [
          q(`sum(queue_controller_shed_ratio{${HTTP}} * queue_admission_leader{${HTTP}})`, 'shed share', 'percentunit'),
          q(
            `sum(queue_controller_checkout_p99_seconds{${HTTP}} * queue_admission_leader{${HTTP}})`,
            'checkout p99',
            's',
          ),
        ],
      },
    ],
  },
];

/** Grafana's query ids: A, B, C… */
const refId = (n: number) => String.fromCharCode(65 + n);

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
          overrides: p.targets.flatMap((t, n) =>
            t.unit
              ? [
                  {
                    matcher: { id: 'byFrameRefID', options: refId(n) },
                    properties: [
                      { id: 'unit', value: t.unit },
                      { id: 'custom.axisPlacement', value: 'right' },
                    ],
                  },
                ]
              : [],
          ),
        },
        options:
          p.type === 'timeseries'
            ? { legend: { displayMode: 'list', placement: 'bottom' } }
            : { reduceOptions: { calcs: ['lastNotNull'] } },
        targets: p.targets.map((t, n) => ({
          datasource,
          refId: refId(n),
          expr: t.expr,
          legendFormat: t.legendFormat,
          ...(p.instant ? { instant: true, range: false } : {}),
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
    templating: { list: variables },
    panels,
  };
}
