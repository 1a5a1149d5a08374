/**
 * What instrumentation costs: the share of the service's busy CPU, in a
 * V8 CPU profile taken under load, spent in prom-client (inclusive) or in the
 * service's own metrics code (self time: the HTTP hooks call the rest of the
 * request from inside themselves, so their inclusive time is everything).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

export function instrumentationShare(file: string): number {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
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
    if (frame.functionName === '(idle)') return;
    const dt = profile.timeDeltas[i]!;
    busy += dt;
    if (inPromClient(id) || ownMetricsCode.test(frame.url)) instrumentation += dt;
  });
  return instrumentation / busy;
}
