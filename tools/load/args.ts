/** The command line, checked before anything is sent: a mistake is one line naming it (main exits 2). */
import { parseArgs } from 'node:util';

import { profiles } from './profiles.js';

const USAGE =
  'usage: npm run load -- [--url http://host:port] [--profile light|medium|heavy|stress|realistic|crowd]' +
  ' [--duration s] [--users n] [--shared] [--out file.json] [--prequeue s] [--burst share] [--spread s]';

export const HELP = `${USAGE}

Rehearses a sale against a running flashsale, then prints a report and an audit
and writes the report as JSON.

  --url URL        the service's root (default http://127.0.0.1:8080)
  --profile NAME   light (default), medium, heavy, stress, realistic or crowd
  --duration S     seconds to run (default: the profile's); the run also stops at the end of the sale
  --users N        simulated users at a time (default: the profile's)
  --shared         others buy in the same sale: skip the audit's exact count
  --out FILE       where the JSON report goes (default .load-results/<time>.json)
  --help, -h       this text

crowd (a waiting room, WAITING_ROOM=on): users arrive in the next sale's pre-queue
and after its start, poll as Retry-After says, buy once admitted; its audit checks
admission order, the pre-queue shuffle and sold out. Only with --profile crowd:
  --prequeue S     the service's PREQUEUE_SECONDS (default 60)
  --burst SHARE    share of users arriving in the pre-queue (default 0.8)
  --spread S       seconds after the start over which the others arrive (default 10)

The user limit is the service's, as it states it when a user reaches it.
Ctrl-C stops sending and still reports; a second Ctrl-C quits at once.
Exit: 0 audit passed, 1 audit failed, 2 bad argument or no service or sale,
130 interrupted by Ctrl-C (when the audit found nothing). See tools/README.md.
`;

const options = {
  url: { type: 'string', default: 'http://127.0.0.1:8080' },
  profile: { type: 'string', default: 'light' },
  duration: { type: 'string' },
  users: { type: 'string' },
  shared: { type: 'boolean', default: false },
  out: { type: 'string' },
  prequeue: { type: 'string', default: '60' },
  burst: { type: 'string', default: '0.8' },
  spread: { type: 'string', default: '10' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** The options, or 'help' when --help was asked for (then nothing else is checked). */
export function parseOptions(args: string[]) {
  const values = parse(args);
  if (values.help) return 'help' as const;
  // Object.hasOwn: `--profile toString` must not find Object.prototype's.
  if (!Object.hasOwn(profiles, values.profile)) {
    throw new Error(`--profile: unknown profile "${values.profile}", one of ${Object.keys(profiles).join(', ')}`);
  }
  const profile = profiles[values.profile]!;
  return {
    url: origin(values.url),
    profileName: values.profile,
    profile,
    users: positive('--users', values.users ?? String(profile.users), true),
    duration: positive('--duration', values.duration ?? String(profile.duration), false),
    shared: values.shared,
    prequeue: positive('--prequeue', values.prequeue, false),
    burst: share('--burst', values.burst),
    spread: positive('--spread', values.spread, false),
    out: values.out ?? `.load-results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  };
}

function parse(args: string[]) {
  try {
    return parseArgs({ args: joinDashValues(args), options }).values;
  } catch (error) {
    // parseArgs explains some mistakes over several lines; the first one names it.
    throw new Error(`${(error as Error).message.split('\n')[0]!.replace(/\.$/, '')}; ${USAGE}`);
  }
}

/**
 * `--users -3` as `--users=-3`: parseArgs calls a value starting with a dash
 * "ambiguous", which hides the real mistake (a negative number) that the
 * value's own check then names.
 */
function joinDashValues(args: string[]): string[] {
  const valued = new Set(Object.entries(options).flatMap(([name, o]) => (o.type === 'string' ? [`--${name}`] : [])));
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (valued.has(args[i]!) && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${args[i]}=${next}`);
      i++;
    } else joined.push(args[i]!);
  }
  return joined;
}

/** The service's origin. A trailing slash is fine; any other path is refused rather than silently dropped. */
function origin(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`--url: "${text}" is not a URL, such as http://127.0.0.1:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--url: "${text}" is not http or https`);
  if (url.pathname !== '/' || url.search || url.hash) {
    throw new Error(`--url: "${text}" must be the service's root, such as ${url.origin}`);
  }
  return url.origin;
}

/** Digits only: Number() alone would take "", "0x10" and "1e3". */
function positive(flag: string, text: string, whole: boolean): number {
  const n = Number(text);
  if (!(whole ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text) || !(n > 0)) {
    throw new Error(`${flag} must be a positive ${whole ? 'whole number' : 'number'}, got "${text}"`);
  }
  return n;
}

/** A share from 0 to 1. */
function share(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || n > 1) throw new Error(`${flag} must be a share from 0 to 1, got "${text}"`);
  return n;
}
