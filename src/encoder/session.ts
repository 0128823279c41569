/**
 * The text and image encoders as onnxruntime sessions. This is the only module that imports
 * onnxruntime-node.
 *
 * Devices: 'cpu'; 'cuda' or 'cuda:N' (onnxruntime's CUDA execution provider, an error naming what is
 * missing when it cannot load); 'auto' (CUDA when it loads, else CPU with `fallbackReason` saying why).
 *
 * onnxruntime-node 1.29's binding passes only `deviceId` to the CUDA provider: its other options
 * (cudnn_conv_algo_search, enable_cuda_graph, I/O binding) are not reachable from JavaScript, so the
 * provider runs with its defaults (exhaustive cuDNN algorithm search, which the patch Conv benefits from).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { InternalError, ModelError, UsageError, expectedMessage, errorMessage } from '../errors.js';
import { IMAGE_INPUT, IMAGE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, type ModelManifest } from '../model-format.js';
import { parseDeviceRequest, type DeviceRequest } from './device.js';
import { disableOnnxruntimeTelemetry } from './onnxruntime-telemetry.js';
import { FileReadError, checkRegularFile, readFailureText } from '../io/regular-file.js';

export { parseDeviceRequest, type DeviceRequest } from './device.js';

// Before any session exists: onnxruntime reads the variable when it creates its environment.
disableOnnxruntimeTelemetry();

export interface EncoderSessions {
  device: 'cpu' | 'cuda';
  deviceId: number;
  executionProvider: string;
  onnxruntimeVersion: string;
  fallbackReason?: string;
  encodeText(inputIds: BigInt64Array, batch: number): Promise<Float32Array>;
  encodeImages(pixels: Float32Array, batch: number): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface OpenEncodersOptions {
  device: DeviceRequest;
  /** Intra-op threads for the CPU provider; onnxruntime picks one per physical core when omitted. */
  threads?: number;
}

export const onnxruntimeVersion: string = ort.env.versions.node ?? ort.env.versions.common;

// A failed CUDA load is reported through fallbackReason or a typed error; onnxruntime's own log line
// on stderr would only repeat it, outside the CLI's control of stderr.
ort.env.logLevel = 'fatal';

const CUDA_PROVIDER_LIBRARIES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];

function sessionOptions(provider: 'cpu' | 'cuda', deviceId: number, threads: number | undefined): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId }] : ['cpu'],
    graphOptimizationLevel: 'all',
    enableMemPattern: true,
    enableCpuMemArena: true,
    executionMode: 'sequential',
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
  };
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

/**
 * Why the CUDA provider cannot load on this machine, or undefined when its libraries load. It creates
 * no session, so it is cheap enough to decide up front which encoders to prepare for `--device auto`;
 * a GPU that is absent or busy still shows only when a session starts.
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

function onnxruntimeBindingDir(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
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

async function createSession(file: string, provider: 'cpu' | 'cuda', deviceId: number, threads: number | undefined): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, sessionOptions(provider, deviceId, threads));
}

async function createPair(modelDir: string, manifest: ModelManifest, provider: 'cpu' | 'cuda', deviceId: number, threads: number | undefined) {
  const text = await createSession(path.join(modelDir, manifest.text.file), provider, deviceId, threads);
  try {
    const image = await createSession(path.join(modelDir, manifest.image.file), provider, deviceId, threads);
    return { text, image };
  } catch (err) {
    await text.release();
    throw err;
  }
}

/** Both encoders are regular files: onnxruntime would wait forever on a FIFO, or read a device without end. */
async function checkModelFiles(modelDir: string, manifest: ModelManifest): Promise<void> {
  for (const file of [manifest.text.file, manifest.image.file]) {
    try {
      await checkRegularFile(path.join(modelDir, file));
    } catch (err) {
      if (err instanceof FileReadError && err.code === 'ENOENT') throw new ModelError(`The model folder ${modelDir} has no ${file}; convert the model again`);
      throw new ModelError(`Cannot load ${path.join(modelDir, file)}: ${readFailureText(err)}`, { cause: err });
    }
  }
}

export async function openEncoders(modelDir: string, manifest: ModelManifest, opts: OpenEncodersOptions): Promise<EncoderSessions> {
  const device = parseDeviceRequest(opts.device);
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
    throw new UsageError(expectedMessage('a positive integer', 'threads', opts.threads));
  }
  const dir = path.resolve(modelDir);
  await checkModelFiles(dir, manifest);
  let fallbackReason: string | undefined;
  if (device.kind !== 'cpu') {
    try {
      const pair = await createPair(dir, manifest, 'cuda', device.deviceId, opts.threads);
      return new OrtEncoders(pair.text, pair.image, manifest, 'cuda', device.deviceId, undefined);
    } catch (err) {
      const reason = cudaFailure(err);
      if (device.kind === 'cuda') throw new UsageError(`Device ${String(opts.device)} was requested, but ${reason}`, { cause: err });
      fallbackReason = `CUDA unavailable, using CPU: ${reason}`;
    }
  }
  try {
    const pair = await createPair(dir, manifest, 'cpu', 0, opts.threads);
    return new OrtEncoders(pair.text, pair.image, manifest, 'cpu', 0, fallbackReason);
  } catch (err) {
    throw new ModelError(`onnxruntime cannot load the encoders in ${dir}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Provider-load failures get a diagnosis; other CUDA errors (no device, out of memory) keep onnxruntime's words. */
function cudaFailure(err: unknown): string {
  const message = errorMessage(err);
  return /Failed to load|shared library/i.test(message) ? diagnoseCudaProvider(err) : `onnxruntime's CUDA provider failed: ${message}`;
}

class OrtEncoders implements EncoderSessions {
  readonly executionProvider: string;
  readonly onnxruntimeVersion = onnxruntimeVersion;

  constructor(
    private readonly text: ort.InferenceSession,
    private readonly image: ort.InferenceSession,
    private readonly manifest: ModelManifest,
    readonly device: 'cpu' | 'cuda',
    readonly deviceId: number,
    readonly fallbackReason: string | undefined,
  ) {
    this.executionProvider = device === 'cuda' ? 'CUDAExecutionProvider' : 'CPUExecutionProvider';
  }

  async encodeText(inputIds: BigInt64Array, batch: number): Promise<Float32Array> {
    const contextLength = this.manifest.text.contextLength;
    checkBatch(inputIds.length, batch, contextLength, 'input ids');
    const feeds = { [TEXT_INPUT]: new ort.Tensor('int64', inputIds, [batch, contextLength]) };
    return this.embeddings(await this.text.run(feeds), TEXT_OUTPUT, batch, this.manifest.text.embedDim);
  }

  async encodeImages(pixels: Float32Array, batch: number): Promise<Float32Array> {
    const size = this.manifest.image.imageSize;
    checkBatch(pixels.length, batch, 3 * size * size, 'pixel values');
    const feeds = { [IMAGE_INPUT]: new ort.Tensor('float32', pixels, [batch, 3, size, size]) };
    return this.embeddings(await this.image.run(feeds), IMAGE_OUTPUT, batch, this.manifest.image.embedDim);
  }

  private embeddings(results: ort.InferenceSession.ReturnType, name: string, batch: number, dim: number): Float32Array {
    const tensor = results[name];
    if (tensor === undefined || tensor.type !== 'float32' || tensor.data.length !== batch * dim) {
      throw new ModelError(`The encoder's ${name} output is not float32 [${batch}, ${dim}] as the manifest says; convert the model again`);
    }
    return tensor.data as Float32Array;
  }

  async close(): Promise<void> {
    await Promise.all([this.text.release(), this.image.release()]);
  }
}

function checkBatch(length: number, batch: number, perItem: number, what: string): void {
  if (!Number.isInteger(batch) || batch < 1 || length !== batch * perItem) {
    throw new InternalError(`Expected ${batch} x ${perItem} ${what}, received ${length} values`);
  }
}
