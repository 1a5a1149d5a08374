/** Removing what a test or a bench left in a shared Redis (shared by test/ and tools/). */
import { createClient } from 'redis';

/**
 * Unlinks every key matching `pattern` (freed in the background, so a big
 * hash does not stall the server for its other clients). No reconnecting:
 * with Redis down this fails rather than hangs.
 */
export async function unlinkKeys(pattern: string, url: string): Promise<void> {
  const client = await createClient({ url, socket: { reconnectStrategy: false } }).connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
      if (keys.length > 0) await client.unlink(keys);
    }
  } finally {
    await client.close();
  }
}
