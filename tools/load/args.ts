/** The command line, checked before anything is sent: a mistake is one line naming it (main exits 2). */
import { parseArgs } from 'node:util';

import { profiles } from './profiles.js';

const USAGE =
  'usage: npm run load -- --url http://host:port --profile light|medium|heavy|stress|realistic' +
  ' [--duration s] [--users n] [--user-limit n] [--shared] [--out file.json]';

export function parseOptions(args: string[]) {
  const values = parse(args);
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
    userLimit: positive('--user-limit', values['user-limit'], true),
    shared: values.shared,
    out: values.out,
  };
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        url: { type: 'string', default: 'http://127.0.0.1:8080' },
        profile: { type: 'string', default: 'light' },
        duration: { type: 'string' },
        users: { type: 'string' },
        'user-limit': { type: 'string', default: '10' },
        shared: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    }).values;
  } catch (error) {
    // parseArgs explains some mistakes over several lines; the first one names it.
    throw new Error(`${(error as Error).message.split('\n')[0]!.replace(/\.$/, '')}; ${USAGE}`);
  }
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
    throw new Error(`${flag}: "${text}" is not a positive ${whole ? 'whole number' : 'number'}`);
  }
  return n;
}
