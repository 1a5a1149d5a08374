/**
 * Reading a V8 CPU profile (`node --cpu-prof`) taken under load:
 * - what instrumentation costs: the share of the service's busy CPU spent in
 *   prom-client (inclusive) or in the service's own metrics code (self time:
 *   the HTTP hooks call the rest of the request from inside themselves, so
 *   their inclusive time is everything);
 * - where the CPU goes, by module: each busy sample goes to the module of the
 *   innermost frame that belongs to a module (Fastify, node-redis, pg,
 *   prom-client, our code), so Node's own code and native calls (`writev`,
 *   the HTTP parser, JSON) count for the module that called them; GC is its
 *   own line; what no module called (the event loop, (program)) is "other".
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const load = (file: string) => {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return { profile, nodes, parent };
};

/** The index of the first sample `skipMs` after the profile started. */
function underLoad(profile: Profile, skipMs: number): number {
  let t = 0;
  const i = profile.timeDeltas.findIndex((dt) => (t += dt) >= skipMs * 1000);
  return i < 0 ? profile.samples.length : i;
}

/** `skipMs`: leave out the first samples (start-up: loading modules, creating the sale), to see the load alone. */
export function instrumentationShare(file: string, skipMs = 0): number {
  const { profile, nodes, parent } = load(file);
  const skipped = underLoad(profile, skipMs);
  const inPromClient = (id: number): boolean => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      if (nodes.get(at)!.callFrame.url.includes('/prom-client/')) return true;
    }
    return false;
  };
  const ownMetricsCode = /\/dist\/src\/(http\/instrument|metrics\/metrics)\.js$/;
  let busy = 0;
  let instrumentation = 0;
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === '(idle)' || i < skipped) return;
    const dt = profile.timeDeltas[i]!;
    busy += dt;
    if (inPromClient(id) || ownMetricsCode.test(frame.url)) instrumentation += dt;
  });
  return instrumentation / busy;
}

export const MODULES = ['Fastify', 'node-redis', 'pg', 'prom-client', 'our code', 'GC', 'other'] as const;
export type Module = (typeof MODULES)[number];

const PACKAGES: [RegExp, Module][] = [
  [
    /\/node_modules\/(fastify|@fastify|find-my-way|fast-json-stringify|avvio|fast-querystring|light-my-request|ajv)\//,
    'Fastify',
  ],
  [/\/node_modules\/(@redis|redis|cluster-key-slot)\//, 'node-redis'],
  [/\/node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+)\//, 'pg'],
  [/\/node_modules\/(prom-client|tdigest|bintrees)\//, 'prom-client'],
  [/\/dist\/src\//, 'our code'],
];
const moduleOf = (url: string): Module | undefined => PACKAGES.find(([re]) => re.test(url))?.[1];

export interface Breakdown {
  /** Share of the busy CPU per module. */
  modules: Record<Module, number>;
  /** The functions with the most self time, with their share of busy CPU. */
  top: { name: string; share: number }[];
}

export function moduleBreakdown(file: string, skipMs = 0, topN = 10): Breakdown {
  const { profile, nodes, parent } = load(file);
  const skipped = underLoad(profile, skipMs);
  const owner = new Map<number, Module>();
  const ownerOf = (id: number): Module => {
    const known = owner.get(id);
    if (known) return known;
    const frame = nodes.get(id)!.callFrame;
    let m: Module | undefined = frame.functionName === '(garbage collector)' ? 'GC' : moduleOf(frame.url);
    if (!m) {
      const up = parent.get(id);
      m = up === undefined ? 'other' : ownerOf(up);
    }
    owner.set(id, m);
    return m;
  };
  const modules = Object.fromEntries(MODULES.map((m) => [m, 0])) as Record<Module, number>;
  const self = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === '(idle)' || i < skipped) return;
    const dt = profile.timeDeltas[i]!;
    busy += dt;
    modules[ownerOf(id)] += dt;
    const where = frame.url ? frame.url.replace(/^.*\/(node_modules|dist)\//, '').replace(/^node:/, '') : 'native';
    const name = `${frame.functionName || '(anonymous)'} (${where})`;
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  for (const m of MODULES) modules[m] /= busy;
  const top = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([name, t]) => ({ name, share: t / busy }));
  return { modules, top };
}

type Frame = ProfileNode['callFrame'];

/**
 * For each test, the share of the busy CPU whose stack holds a frame it
 * accepts (inclusive time: a function and everything it calls).
 */
export function profileShare(file: string, tests: ((frame: Frame) => boolean)[], skipMs = 0): number[] {
  const { profile, nodes, parent } = load(file);
  const skipped = underLoad(profile, skipMs);
  const within = (id: number, test: (frame: Frame) => boolean) => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      if (test(nodes.get(at)!.callFrame)) return true;
    }
    return false;
  };
  let busy = 0;
  const spent = tests.map(() => 0);
  profile.samples.forEach((id, i) => {
    if (nodes.get(id)!.callFrame.functionName === '(idle)' || i < skipped) return;
    const dt = profile.timeDeltas[i]!;
    busy += dt;
    tests.forEach((test, t) => {
      if (within(id, test)) spent[t]! += dt;
    });
  });
  return spent.map((s) => s / busy);
}
