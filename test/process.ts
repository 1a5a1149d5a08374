/**
 * Real processes for tests that must kill and restart things: the service
 * (`node dist/src/server.js`) and private redis-servers on free ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export { freePort } from '../tools/ports.js';

const server = new URL('../src/server.js', import.meta.url).pathname;

export interface Proc {
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

function track(child: ChildProcess): Proc {
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    exited,
    output: () => output,
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Starts the service with this environment (merged over the test process's). */
export function startService(env: Record<string, string>): Proc {
  return track(spawn(process.execPath, [server], { env: { ...process.env, ...env } }));
}

/** A private redis-server that keeps nothing: killing it loses everything, like a crash. */
export async function startRedis(port: number, ...args: string[]): Promise<Proc> {
  const proc = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args]),
  );
  await waitFor('redis-server', async () => (proc.output().includes('Ready to accept connections') ? true : undefined));
  return proc;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the service on this port answers /sales/active, and returns the sale id. */
export function serviceReady(port: number, ms = 15_000): Promise<string> {
  return waitFor(
    `the service on :${port}`,
    async () => {
      const res = await fetch(`http://127.0.0.1:${port}/sales/active`);
      return res.ok ? ((await res.json()) as { id: string }).id : undefined;
    },
    ms,
  );
}
