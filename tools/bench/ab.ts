/**
 * npm run bench -- --ab <another build> [--only checkout-only --windows 12 --duration 3]:
 * which of two builds spends less service CPU per request on one load, with
 * the host's drift taken out. Both services run at once on CPU 0 and wrk on
 * CPU 1; the load switches between them every `duration` seconds, the order
 * alternating, and each window is compared with its neighbour of the other
 * build. On this project's shared machines, runs of one build after the other
 * drifted more than the effects being measured (docs/PERFORMANCE.md,
 * "Checkouts of one turn in one Redis call"). Prints; writes nothing.
 *
 * The other build is a checkout with its dist/ built, e.g.
 * `git worktree add /tmp/before HEAD~1 && cd /tmp/before && npm ci && npm run build`.
 */
import { median, usage, usageSince, wrk } from './measure.js';
import { LOADS, OTHERS_CPU, SERVICE_CPU, sellOut } from './pinned.js';
import { root, startService } from './service.js';

const here = new URL('../../../tools/bench/', import.meta.url).pathname;
const log = (line: string) => process.stdout.write(`${line}\n`);

export async function abBench(o: {
  other: string;
  load: string;
  windows: number;
  seconds: number;
  connections: number;
}) {
  const load = LOADS.find((l) => l.name === o.load);
  if (!load) throw new Error(`--only must name one load: ${LOADS.map((l) => l.name).join(', ')}`);
  const services = {
    this: await startService({ cpu: SERVICE_CPU, items: load.items }),
    other: await startService({ cpu: SERVICE_CPU, items: load.items, build: o.other }),
  };
  const env = (s: { sale: string }) => ({ SALE: s.sale, ITEMS: String(load.items) });
  const cost = { this: [] as number[], other: [] as number[] };
  try {
    for (const s of Object.values(services)) {
      if (load.soldOut) await sellOut(s.base, env(s));
    }
    for (let i = 0; i < o.windows; i++) {
      for (const name of i % 2 ? (['other', 'this'] as const) : (['this', 'other'] as const)) {
        const s = services[name];
        const before = usage(s.pid);
        const r = wrk(s.base, o.seconds, o.connections, `${here}${load.script}`, env(s), OTHERS_CPU);
        const used = usageSince(before, usage(s.pid));
        cost[name].push(((used.user + used.system) / r.requests) * 1e6);
      }
      log(`window ${i + 1}: this build ${cost.this[i]!.toFixed(1)} µs/request, the other ${cost.other[i]!.toFixed(1)}`);
    }
  } finally {
    await Promise.all(Object.values(services).map((s) => s.stop()));
  }
  const ratios = cost.this.map((c, i) => c / cost.other[i]!);
  log(
    `${load.name}, service CPU per request: this build (${root}) ${median(cost.this).toFixed(1)} µs, ` +
      `the other (${o.other}) ${median(cost.other).toFixed(1)} µs (medians of ${o.windows} windows); ` +
      `this over the other, window by window: median ${median(ratios).toFixed(2)} ` +
      `(${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}), ` +
      `${ratios.filter((r) => r < 1).length} of ${o.windows} cheaper`,
  );
}
