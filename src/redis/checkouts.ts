/**
 * Checkouts that reach Redis in one turn of the event loop go in one script
 * call per sale (`checkout-5+2n.lua`), each decided as if sent alone. Under
 * a stampede tens of connections are read in each turn: one call instead of
 * tens saves the caller's encoding, promises and replies per checkout, and
 * Redis its per-command work, which bounds a sale's slot (docs/SCALING.md).
 *
 * The batch goes out when the turn's I/O callbacks are done (setImmediate),
 * so a lone checkout waits for nothing; one that fills a batch sends it at
 * once. A failed call fails every checkout it carried, as it would have alone.
 */
import type { CheckoutBatch, CheckoutInput, CheckoutResult } from './scripts.js';

/** Bounds how long one script holds Redis (each checkout is a few hash reads and writes). */
export const MAX_CHECKOUTS_PER_CALL = 100;

interface Waiting {
  batch: CheckoutBatch;
  answers: { resolve: (r: CheckoutResult) => void; reject: (err: unknown) => void }[];
}

export function batchCheckouts(run: (batch: CheckoutBatch) => Promise<CheckoutResult[]>) {
  const open = new Map<string, Waiting>(); // by the sale's `ready` key
  let scheduled = false;

  function send({ batch, answers }: Waiting) {
    run(batch).then(
      (results) => answers.forEach((a, i) => a.resolve(results[i]!)),
      (err: unknown) => answers.forEach((a) => a.reject(err)),
    );
  }
  /** Sends a batch before the turn ends (it is full, or the next checkout needs other limits). */
  function sendNow(waiting: Waiting) {
    open.delete(waiting.batch.keys.ready);
    send(waiting);
  }
  function sendAll() {
    scheduled = false;
    const batches = [...open.values()];
    open.clear();
    batches.forEach(send);
  }

  return (p: CheckoutInput) =>
    new Promise<CheckoutResult>((resolve, reject) => {
      let waiting = open.get(p.keys.ready);
      // The limits come from the configuration, so they differ only where a test calls the script directly.
      if (waiting && (waiting.batch.limits !== p.limits || waiting.batch.userLimit !== p.userLimit)) {
        sendNow(waiting);
        waiting = undefined;
      }
      if (!waiting) {
        const { keys, userLimit, now, limits } = p;
        waiting = { batch: { keys, userLimit, now, limits, requests: [] }, answers: [] };
        open.set(keys.ready, waiting);
      }
      waiting.batch.requests.push(p);
      waiting.batch.now = Math.max(waiting.batch.now, p.now);
      waiting.answers.push({ resolve, reject });
      if (waiting.batch.requests.length >= MAX_CHECKOUTS_PER_CALL) {
        sendNow(waiting);
      } else if (!scheduled) {
        scheduled = true;
        setImmediate(sendAll);
      }
    });
}
