/**
 * A child process for the interrupted-write tests: writes an output under withInterruptSignal as the
 * commands do (the scoring done, the final write begun) and holds the write open, so a test can signal
 * it while the temporary file exists. Run as `node interrupted-write.js <target>`; HOLD_MS is how long
 * the rest of the write takes after the first signal.
 * It prints `writing` once the temporary file holds data, and `signalled` after the first signal.
 */
import { createConsole, withInterruptSignal } from '../../src/cli/output.js';
import { openOutputFile } from '../../src/io/atomic.js';

const target = process.argv[2];
const holdMs = Number(process.env.HOLD_MS ?? 0);
process.exitCode = await withInterruptSignal(createConsole({ quiet: false, verbose: true }), async (interrupt) => {
  interrupt.writing();
  const file = await openOutputFile(target);
  await file.write('x'.repeat(100_000)); // over the flush size: the temporary file holds data now
  process.stdout.write('writing\n');
  const alive = setInterval(() => undefined, 1000); // signal handlers alone do not keep the process running
  await new Promise((resolve) => interrupt.signal.addEventListener('abort', resolve, { once: true }));
  clearInterval(alive);
  process.stdout.write('signalled\n');
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  await file.write('end\n');
  await file.commit();
  return 130;
});
