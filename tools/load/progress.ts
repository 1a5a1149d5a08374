/**
 * The live line, once a second: a bar on a terminal, plain lines otherwise.
 * Rates are over the last second, not averages since the start, so a stall
 * shows at once.
 */
export function progress(stopAt: number, tty: boolean, write: (text: string) => void) {
  const started = Date.now();
  const total = Math.max(0, (stopAt - started) / 1000);
  let last = { at: started, requests: 0, errors: 0 };
  let midLine = false;
  let finished = false;
  return {
    tick(requests: number, errors: number) {
      if (finished) return;
      const now = Date.now();
      const per = (n: number) => ((n * 1000) / Math.max(1, now - last.at)).toFixed(0);
      const elapsed = Math.min(total, (now - started) / 1000);
      const text =
        `${elapsed.toFixed(0)}/${total.toFixed(0)} s  ${per(requests - last.requests)} req/s` +
        `  ${per(errors - last.errors)} errors/s (last second)  ${errors} errors in all`;
      last = { at: now, requests, errors };
      if (!tty) return write(`${text}\n`);
      const width = 30;
      const done = total > 0 ? Math.round((elapsed / total) * width) : width;
      write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${text}\x1b[K`);
      midLine = true;
    },
    /** No more ticks; the terminal's line is ended, so whatever comes next (a report, a shell prompt) starts clean. */
    done() {
      finished = true;
      if (midLine) write('\n');
      midLine = false;
    },
  };
}
