/**
 * The PyTorch CPU peer (bench/torch/clip_peer.py) as a child process that serves one command at a time,
 * so a benchmark can time it in turns with pickscore's encoder. Found as Debian's /usr/bin/python3 with
 * python3-torch, or PICKSCORE_TORCH_PYTHON; where torch is missing, startTorchPeer says why instead.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const torchPython = process.env.PICKSCORE_TORCH_PYTHON ?? '/usr/bin/python3';

/** bench/torch/clip_peer.py in the checkout: this module runs from build/bench/. */
const PEER_SCRIPT = fileURLToPath(new URL('../../bench/torch/clip_peer.py', import.meta.url));

/**
 * The peer's environment, tuned as a Python user who cares about speed would: OpenBLAS picks its kernels
 * for this CPU (OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE, where a machine sets them, force older ones),
 * OpenMP gets the thread count, and glibc keeps freed memory for reuse. Without the last, every activation over
 * glibc's mmap threshold (32 MB at most; CLIP-H's MLP activations at batch 8 are 42 MB) is a fresh mmap
 * whose pages fault in on every layer; `mmap_max=0` serves them from the heap, and a high trim threshold
 * keeps the heap's top from going back to the kernel between batches.
 */
export const PEER_GLIBC_TUNABLES = 'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184';

function peerEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), GLIBC_TUNABLES: PEER_GLIBC_TUNABLES, PYTHONUNBUFFERED: '1' };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

export interface PeerGeometry { width: number; layers: number; heads: number; mlp: number }

export interface PeerLoad { load_s: number; fast_path: boolean; engine: string; blas: string }

export interface TorchPeer {
  python: string;
  torchVersion: string;
  glibcTunables: string;
  /** `geometry` replaces CLIP-H's widths and depths, for tests that run the peer small. */
  load(tower: 'image' | 'text', precision: 'fp32' | 'int8', batch: number, geometry?: PeerGeometry): Promise<PeerLoad>;
  /** One timed batch; seconds as the peer measured them around the forward call. */
  run(): Promise<number>;
  unload(): Promise<void>;
  close(): Promise<void>;
}

/** The peer, or the reason it cannot run here (no Python, no torch). */
export async function startTorchPeer(threads: number, log: (line: string) => void, python = torchPython): Promise<TorchPeer | { skipped: string }> {
  const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env: peerEnv(threads), timeout: 120_000 });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : (probe.stderr.trim().split('\n').pop() ?? `exit ${probe.status}`);
    return { skipped: `PyTorch is not available to ${python} (${why}); install Debian's python3-torch or set PICKSCORE_TORCH_PYTHON` };
  }
  const child = spawn(python, [PEER_SCRIPT], { env: peerEnv(threads), stdio: ['pipe', 'pipe', 'pipe'] });
  return new PeerProcess(child, python, probe.stdout.trim(), threads, log);
}

type Reply = { ok: true; [key: string]: unknown } | { ok: false; error: string };

/** How long one command may take: a CLIP-H fp32 load with its warm-up batch is a minute on two busy cores. */
const REPLY_TIMEOUT_MS = 15 * 60_000;

class PeerProcess implements TorchPeer {
  readonly glibcTunables = PEER_GLIBC_TUNABLES;
  private readonly waiting: ((line: string | Error) => void)[] = [];
  private exited: Error | undefined;

  constructor(private readonly child: ChildProcessWithoutNullStreams, readonly python: string, readonly torchVersion: string, private readonly threads: number, log: (line: string) => void) {
    createInterface({ input: child.stdout }).on('line', (line) => this.waiting.shift()?.(line));
    createInterface({ input: child.stderr }).on('line', (line) => log(`torch peer: ${line}`));
    child.on('exit', (code, signal) => {
      this.exited = new Error(`the PyTorch peer exited (${signal ?? `code ${code}`})`);
      for (const wake of this.waiting.splice(0)) wake(this.exited);
    });
    child.on('error', (err) => {
      this.exited = err;
      for (const wake of this.waiting.splice(0)) wake(err);
    });
  }

  private async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.exited) throw this.exited;
    const line = await new Promise<string | Error>((resolve) => {
      const timer = setTimeout(() => resolve(new Error(`the PyTorch peer did not answer ${JSON.stringify(command)} within ${REPLY_TIMEOUT_MS / 60_000} minutes`)), REPLY_TIMEOUT_MS);
      this.waiting.push((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.child.stdin.write(`${JSON.stringify(command)}\n`);
    });
    if (line instanceof Error) throw line;
    const reply = JSON.parse(line) as Reply;
    if (!reply.ok) throw new Error(`PyTorch peer: ${reply.error}`);
    return reply;
  }

  async load(tower: 'image' | 'text', precision: 'fp32' | 'int8', batch: number, geometry?: PeerGeometry): Promise<PeerLoad> {
    const reply = await this.request({ cmd: 'load', tower, precision, batch, threads: this.threads, ...(geometry ? { geometry } : {}) });
    return { load_s: Number(reply.load_s), fast_path: reply.fast_path === true, engine: String(reply.engine), blas: String(reply.blas) };
  }

  async run(): Promise<number> {
    return Number((await this.request({ cmd: 'run' })).seconds);
  }

  async unload(): Promise<void> {
    await this.request({ cmd: 'unload' });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end(`${JSON.stringify({ cmd: 'quit' })}\n`);
    await exited;
  }
}
