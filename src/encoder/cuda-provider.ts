/**
 * Whether onnxruntime-node's CUDA execution provider can load on this machine, asked without loading
 * onnxruntime itself: its provider libraries are looked for in its binding folder and opened with the
 * dynamic loader, which names the first library that is missing. Cheap enough for `--device auto` to
 * decide up front which encoders to prepare, on the main thread, before any session exists.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UsageError, errorMessage } from '../errors.js';

const require = createRequire(import.meta.url);

/** The onnxruntime-node version installed, from its package.json (the binding itself stays unloaded). */
export const onnxruntimeVersion: string = (require('onnxruntime-node/package.json') as { version: string }).version;

const CUDA_PROVIDER_LIBRARIES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];

/** Where onnxruntime-node's CUDA provider stands on this machine: it loads, it is not installed, or it is installed but cannot load. */
export type CudaProviderState = 'loads' | 'absent' | 'unloadable';

/**
 * A CUDA session could not be opened, for `reason`. A UsageError: the device asked for is not there.
 * Whoever decides the device (src/pipeline/open-model.ts) turns it into a message, or a CPU fallback.
 */
export class CudaUnavailableError extends UsageError {
  constructor(readonly reason: string, options?: { cause?: unknown }) {
    super(`CUDA is unavailable: ${reason}`, options);
  }
}

/**
 * Why the CUDA provider did not load, in terms a user can act on. onnxruntime's own error only says
 * "Failed to load shared library"; loading the provider library ourselves makes the dynamic loader
 * name the first missing dependency (a CUDA, cuBLAS or cuDNN library of the wrong major version).
 */
export function diagnoseCudaProvider(error: unknown, bindingDir = onnxruntimeBindingDir()): string {
  const ortMessage = errorMessage(error);
  if (bindingDir === undefined) return `onnxruntime-node ${onnxruntimeVersion}: ${ortMessage}`;
  return cudaProviderProblem(bindingDir) ?? `onnxruntime-node ${onnxruntimeVersion}'s CUDA provider failed: ${ortMessage}`;
}

/** Provider-load failures get a diagnosis; other CUDA errors (no device, out of memory) keep onnxruntime's words. */
export function cudaFailure(err: unknown): string {
  const message = errorMessage(err);
  return /Failed to load|shared library/i.test(message) ? diagnoseCudaProvider(err) : `onnxruntime's CUDA provider failed: ${message}`;
}

/**
 * Why the CUDA provider cannot load on this machine, or undefined when its libraries load. It creates
 * no session; a GPU that is absent or busy still shows only when a session starts.
 */
export function cudaProviderProblem(bindingDir = onnxruntimeBindingDir()): string | undefined {
  if (bindingDir === undefined) return `onnxruntime-node ${onnxruntimeVersion}'s native binding folder was not found`;
  const missing = CUDA_PROVIDER_LIBRARIES.filter((lib) => !existsSync(path.join(bindingDir, lib)));
  if (missing.length > 0) {
    return `onnxruntime-node ${onnxruntimeVersion} has no CUDA provider: ${missing.join(' and ')} missing in ${bindingDir} `
      + '(onnxruntime-node installs them for CUDA 13 on linux x64 unless its install script was skipped)';
  }
  for (const lib of CUDA_PROVIDER_LIBRARIES) {
    const loadError = dlopenError(path.join(bindingDir, lib));
    if (loadError) return `onnxruntime-node ${onnxruntimeVersion}'s CUDA provider cannot load: ${loadError} (it needs CUDA 13 and cuDNN 9 on the library path)`;
  }
  return undefined;
}

/**
 * Whether onnxruntime-node's CUDA provider libraries are there at all; whether they load is
 * cudaProviderProblem's question. They are absent wherever onnxruntime-node's install script skipped
 * its download (this repository's own install does), which is the ordinary CPU machine.
 */
export function cudaProviderInstalled(bindingDir = onnxruntimeBindingDir()): boolean {
  return bindingDir !== undefined && CUDA_PROVIDER_LIBRARIES.every((lib) => existsSync(path.join(bindingDir, lib)));
}

export function cudaProviderState(): CudaProviderState {
  if (cudaProviderProblem() === undefined) return 'loads';
  return cudaProviderInstalled() ? 'unloadable' : 'absent';
}

function onnxruntimeBindingDir(): string | undefined {
  try {
    const entry = require.resolve('onnxruntime-node');
    return path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** The dynamic loader's message for `file`, or undefined when it loads (it is not a Node addon, so Node then complains about registration). */
function dlopenError(file: string): string | undefined {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, file);
    return undefined;
  } catch (err) {
    const message = errorMessage(err);
    return /self-register|napi_register|module version/i.test(message) ? undefined : message;
  }
}
