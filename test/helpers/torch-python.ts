/**
 * Runs Debian's PyTorch (python3-torch 1.13, python3-torchvision 0.14, installed for /usr/bin/python3)
 * as the reference for the scorer tests: checkpoints written by torch.save, forwards computed by torch,
 * image transforms computed by torchvision. Tests that need it skip with a printed notice when it is absent.
 */
import { spawnSync } from 'node:child_process';

export const torchPython = process.env.PICKSCORE_TORCH_PYTHON ?? process.env.PICKSCORE_PILLOW_PYTHON ?? '/usr/bin/python3';

const probed = new Map<string, boolean>();

/** Whether `modules` import in the torch interpreter; prints a notice naming what is skipped when not. */
export function pythonHas(modules: string[], skipped: string): boolean {
  const key = modules.join(',');
  let ok = probed.get(key);
  if (ok === undefined) {
    ok = spawnSync(torchPython, ['-c', modules.map((m) => `import ${m}`).join('; ')], { encoding: 'utf8' }).status === 0;
    probed.set(key, ok);
  }
  if (!ok) process.stderr.write(`notice: ${torchPython} with ${modules.join(', ')} not found; ${skipped} are skipped\n`);
  return ok;
}

/** Runs `script` with `args`, `input` on stdin; returns stdout, and throws with stderr on failure. */
export function runPython(script: string, args: string[] = [], input?: string): Buffer {
  const run = spawnSync(torchPython, ['-c', script, ...args], { input, maxBuffer: 1 << 30 });
  if (run.status !== 0) throw new Error(`${torchPython} failed (status ${run.status}): ${run.stderr?.toString() ?? ''}`);
  return run.stdout;
}
