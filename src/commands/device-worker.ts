/**
 * Worker entry of `cuda:all` (all-devices.ts): one process per device, scoring one shard on it and
 * writing the part merge reads. Entry code only: the messages are in device-protocol.ts.
 *
 * A first SIGINT, SIGTERM or SIGHUP (a Ctrl-C reaches every process of the terminal's group), an
 * `abort` from the parent, or the parent going away stops the work as the CLI stops a run: scoring after
 * the batch being encoded, a download at once; a second signal ends the process.
 */
import { PickScoreError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { DeviceJob, ParentMessage, WorkerMessage } from './device-protocol.js';
import { runEvalPart } from './eval.js';
import { writeRankOutput } from './rank-output.js';
import { runRank } from './rank.js';

const controller = new AbortController();
let signals = 0;

function stop(): void {
  controller.abort();
}

for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(name, () => {
    if (++signals > 1) process.exit(130);
    stop();
  });
}
process.on('disconnect', stop);

function post(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send?.(message, undefined, {}, () => resolve());
  });
}

/** The warnings and errors of the run go to the parent, which labels them; informational lines stay here, as with --quiet. */
function log(line: string): void {
  if (/^(warning|error)\b/i.test(line)) void post({ type: 'log', line });
}

async function run(job: DeviceJob): Promise<void> {
  const scoring = { ...job.scoring, log, onModelProgress: undefined, signal: controller.signal };
  try {
    if (job.command === 'rank') {
      const result = await runRank({ ...job.options, ...scoring, shard: job.shard, outputs: job.outputs });
      await writeRankOutput({ ...result, stats: undefined }, 'json', { path: job.part });
      await post({ type: 'done', incomplete: result.incomplete, counts: { ...result.counts }, stats: result.stats });
    } else {
      const result = await runEvalPart({ ...job.options, ...scoring, shard: job.shard, outputs: job.outputs });
      await writeFileAtomic(job.part, `${JSON.stringify(result.part)}\n`);
      await post({ type: 'done', incomplete: result.incomplete, counts: { ...result.counts }, skippedOutputs: result.skippedOutputs });
    }
  } catch (err) {
    const kind = err instanceof PickScoreError ? err.kind : 'unknown';
    const message = kind === 'unknown' && err instanceof Error ? err.stack ?? err.message : errorMessage(err);
    await post({ type: 'failed', error: { kind, message } });
  } finally {
    if (process.connected) process.disconnect();
  }
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'abort') stop();
  else void run(message.job);
});
