/**
 * Time comes from here, never from Date.now() directly, so tests can move the
 * clock across a sale boundary while requests are in flight.
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
