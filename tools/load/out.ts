/** The JSON report's file, made sure of before any load is sent, so a run is never lost to a bad path at its end. */
import { closeSync, existsSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Creates the missing directories and opens the file for writing, then
 * leaves things as they were (a file that did not exist is removed again).
 * Throws one line naming the path.
 */
export function checkOut(path: string): void {
  try {
    makeDirs(dirname(resolve(path)));
    const existed = existsSync(path);
    closeSync(openSync(path, 'a')); // 'a': opening checks writing without truncating a file already there
    if (!existed) unlinkSync(path);
  } catch (error) {
    throw new Error(`--out: cannot write "${path}": ${(error as Error).message}`);
  }
}

/**
 * One level at a time, not mkdirSync's `recursive`: on Node 20 that loops
 * forever on a path under /proc (`/proc/nope/x`), where mkdir answers ENOENT
 * although the parent exists. Here that ENOENT is simply thrown.
 */
function makeDirs(dir: string): void {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
    return;
  }
  makeDirs(dirname(dir));
  mkdirSync(dir);
}
