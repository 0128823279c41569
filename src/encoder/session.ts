/**
 * The text and image encoders as onnxruntime sessions. This is the only module that imports
 * onnxruntime-node.
 *
 * Encoders open on the device they are given, the CPU or one CUDA device, or not at all: a CUDA device
 * that cannot be used is a CudaUnavailableError naming why. Whether to try another device instead is
 * decided above (src/pipeline/open-model.ts), which also records what ran.
 *
 * onnxruntime-node 1.29's binding passes only `deviceId` to the CUDA provider: its other options
 * (cudnn_conv_algo_search, enable_cuda_graph, I/O binding) are not reachable from JavaScript, so the
 * provider runs with its defaults (exhaustive cuDNN algorithm search, which the patch Conv benefits from).
 */
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { InternalError, ModelError, errorMessage } from '../errors.js';
import { IMAGE_INPUT, IMAGE_OUTPUT, IMAGE_SCORE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, type ModelManifest } from '../model-format.js';
import { CudaUnavailableError, cudaFailure } from './cuda-provider.js';
import type { PlacedDevice } from './device.js';
import { disableOnnxruntimeTelemetry } from './onnxruntime-telemetry.js';
import { FileReadError, checkRegularFile, readFailureText } from '../io/regular-file.js';

// Before any session exists: onnxruntime reads the variable when it creates its environment.
disableOnnxruntimeTelemetry();

export interface EncoderSessions {
  executionProvider: string;
  onnxruntimeVersion: string;
  encodeText(inputIds: BigInt64Array, batch: number): Promise<Float32Array>;
  encodeImages(pixels: Float32Array, batch: number): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface OpenEncodersOptions {
  device: PlacedDevice;
  /** Intra-op threads for the CPU provider; onnxruntime picks one per physical core when omitted. */
  threads?: number;
  /**
   * What encodeImages returns: the image embeddings (the default), or the head's score of a folder
   * converted with one (its manifest's imageScore), [batch, outFeatures].
   */
  imageOutput?: 'embeds' | 'score';
  /**
   * onnxruntime's profiler, for measuring where the time goes (bench/op-profile.bench.ts): each
   * session writes `<prefix>-text_<date>.json` and `<prefix>-image_<date>.json` when the encoders close.
   */
  profileFilePrefix?: string;
}

type SessionTuning = Pick<OpenEncodersOptions, 'threads' | 'profileFilePrefix'>;

export const onnxruntimeVersion: string = ort.env.versions.node ?? ort.env.versions.common;

// A failed CUDA load is reported through fallbackReason or a typed error; onnxruntime's own log line
// on stderr would only repeat it, outside the CLI's control of stderr.
ort.env.logLevel = 'fatal';

/**
 * onnxruntime's session configuration entries (onnxruntime_session_options_config_keys.h), for the CPU
 * provider's threads (a CUDA session has them too, for the nodes CUDA leaves to the CPU):
 * - `session.set_denormal_as_zero`: flush denormal floats to zero. A softmax row whose scores span more
 *   than about 87 gives probabilities below float's normal range, and every multiply-add that touches one
 *   takes a microcode assist: an attention block built to produce them ran 2.2x slower (114 ms against
 *   251 ms). Flushed, such a probability is 0 instead of below 1.2e-38, far under fp32's 1e-4 parity.
 *   onnxruntime sets the flag on its own threads and, once per process, on the thread that creates the
 *   first session, which also runs its share of the work: so it is set only off the main thread (the
 *   encoder thread of `rank` and `eval`), where no caller's JavaScript sees a flushed number.
 * - `session.intra_op.allow_spinning` off: an idle intra-op thread sleeps instead of spinning for the
 *   next parallel section. Spinning saves a wake-up per section (microseconds; a CLIP-H batch has about
 *   a thousand), but on a busy machine a spinning thread takes the core from the thread it waits for:
 *   every GEMM is split in one fixed share per thread, so the op waits for the slowest share.
 */
function sessionOptions(provider: 'cpu' | 'cuda', deviceId: number, tower: 'text' | 'image', tuning: SessionTuning, onMainThread = isMainThread): ort.InferenceSession.SessionOptions {
  const { threads, profileFilePrefix } = tuning;
  const entries = {
    intra_op: { allow_spinning: '0' },
    ...(onMainThread ? {} : { set_denormal_as_zero: '1' }),
  };
  return {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId }] : ['cpu'],
    graphOptimizationLevel: 'all',
    enableMemPattern: true,
    enableCpuMemArena: true,
    executionMode: 'sequential',
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
    ...(profileFilePrefix !== undefined ? { enableProfiling: true, profileFilePrefix: `${profileFilePrefix}-${tower}` } : {}),
    extra: { session: entries },
  };
}

async function createSession(modelDir: string, manifest: ModelManifest, tower: 'text' | 'image', provider: 'cpu' | 'cuda', deviceId: number, tuning: SessionTuning): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path.join(modelDir, manifest[tower].file), sessionOptions(provider, deviceId, tower, tuning));
}

async function createPair(modelDir: string, manifest: ModelManifest, provider: 'cpu' | 'cuda', deviceId: number, tuning: SessionTuning) {
  const text = await createSession(modelDir, manifest, 'text', provider, deviceId, tuning);
  try {
    const image = await createSession(modelDir, manifest, 'image', provider, deviceId, tuning);
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
  const dir = path.resolve(modelDir);
  await checkModelFiles(dir, manifest);
  const { device } = opts;
  if (device.kind === 'cuda') {
    try {
      const pair = await createPair(dir, manifest, 'cuda', device.id, opts);
      return new OrtEncoders(pair.text, pair.image, manifest, 'CUDAExecutionProvider', opts.profileFilePrefix !== undefined, opts.imageOutput);
    } catch (err) {
      throw new CudaUnavailableError(cudaFailure(err), { cause: err });
    }
  }
  try {
    const pair = await createPair(dir, manifest, 'cpu', 0, opts);
    return new OrtEncoders(pair.text, pair.image, manifest, 'CPUExecutionProvider', opts.profileFilePrefix !== undefined, opts.imageOutput);
  } catch (err) {
    throw new ModelError(`onnxruntime cannot load the encoders in ${dir}: ${errorMessage(err)}`, { cause: err });
  }
}

class OrtEncoders implements EncoderSessions {
  readonly onnxruntimeVersion = onnxruntimeVersion;

  constructor(
    private readonly text: ort.InferenceSession,
    private readonly image: ort.InferenceSession,
    private readonly manifest: ModelManifest,
    readonly executionProvider: 'CPUExecutionProvider' | 'CUDAExecutionProvider',
    private readonly profiling: boolean,
    private readonly imageOutput: 'embeds' | 'score' = 'embeds',
  ) {
    if (imageOutput === 'score' && !manifest.imageScore) throw new ModelError(`The model ${manifest.name} has no ${IMAGE_SCORE_OUTPUT} output: it was converted without a head`);
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
    if (this.imageOutput === 'score') return this.embeddings(await this.image.run(feeds, [IMAGE_SCORE_OUTPUT]), IMAGE_SCORE_OUTPUT, batch, this.manifest.imageScore!.outFeatures);
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
    if (this.profiling) for (const session of [this.text, this.image]) session.endProfiling();
    await Promise.all([this.text.release(), this.image.release()]);
  }
}

function checkBatch(length: number, batch: number, perItem: number, what: string): void {
  if (!Number.isInteger(batch) || batch < 1 || length !== batch * perItem) {
    throw new InternalError(`Expected ${batch} x ${perItem} ${what}, received ${length} values`);
  }
}
