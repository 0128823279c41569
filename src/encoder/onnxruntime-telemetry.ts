/**
 * Turns off onnxruntime's telemetry before onnxruntime creates its environment (at the first session).
 *
 * onnxruntime-node 1.29 on Linux starts Microsoft's 1DS telemetry there. Its system-information code
 * reads /proc/self/cmdline whole and runs a std::regex over it; libstdc++'s matcher recurses once per
 * character, so a command line with one argument of about 15,000 characters or more overflows the
 * stack of the thread that opens the first session (the encoder thread: SIGSEGV, exit 139, no
 * message). Any long argument does it, used or not, in the CLI and in a program that loads the library.
 * The same code reads /etc/machine-id, keeps a database under ~/.cache/Microsoft/DeveloperTools and
 * queues usage events for upload. onnxruntime skips all of it when ORT_DISABLE_TELEMETRY is set (and in
 * CI, where it looks for CI=true and the like, which is why CI never crashed).
 */
import { isMainThread } from 'node:worker_threads';

export const TELEMETRY_VARIABLE = 'ORT_DISABLE_TELEMETRY';

/**
 * Sets ORT_DISABLE_TELEMETRY=1, whatever it was. A value already set is not kept: 0, false or an empty
 * value (an environment file's `ORT_DISABLE_TELEMETRY=`) leaves the telemetry on, and with it the crash
 * above, so pickscore never runs onnxruntime with it on. onnxruntime reads it with getenv(), so only the
 * main thread can set it: a worker thread's process.env is a copy that never reaches the C environment.
 */
export function disableOnnxruntimeTelemetry(): void {
  if (isMainThread) process.env[TELEMETRY_VARIABLE] = '1';
}
