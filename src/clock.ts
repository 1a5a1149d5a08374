/**
 * The time of the business comes from here: which sale is open, when a code
 * was bought or an attempt made, the rate-limit buckets. Tests move it across
 * a sale boundary while requests are in flight. Waiting is measured on the
 * real clock (Date.now(), timers): deadlines, timeouts and uptime say how long
 * the process itself waited, which moving the business clock must not change.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that follows real time plus an offset tests can advance. */
export function offsetClock(offsetMs = 0): Clock & { advance(ms: number): void; set(epochMs: number): void } {
  let offset = offsetMs;
  return {
    now: () => Date.now() + offset,
    advance: (ms) => {
      offset += ms;
    },
    set: (epochMs) => {
      offset = epochMs - Date.now();
    },
  };
}
