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
}

export const onnxruntimeVersion: string = ort.env.versions.node ?? ort.env.versions.common;

// A failed CUDA load is reported through fallbackReason or a typed error; onnxruntime's own log line
// on stderr would only repeat it, outside the CLI's control of stderr.
ort.env.logLevel = 'fatal';

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
  const dir = path.resolve(modelDir);
  await checkModelFiles(dir, manifest);
  const { device } = opts;
  if (device.kind === 'cuda') {
    try {
      const pair = await createPair(dir, manifest, 'cuda', device.id, opts.threads);
      return new OrtEncoders(pair.text, pair.image, manifest, 'CUDAExecutionProvider', opts.imageOutput);
    } catch (err) {
      throw new CudaUnavailableError(cudaFailure(err), { cause: err });
    }
  }
  try {
    const pair = await createPair(dir, manifest, 'cpu', 0, opts.threads);
    return new OrtEncoders(pair.text, pair.image, manifest, 'CPUExecutionProvider', opts.imageOutput);
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
    await Promise.all([this.text.release(), this.image.release()]);
  }
}

function checkBatch(length: number, batch: number, perItem: number, what: string): void {
  if (!Number.isInteger(batch) || batch < 1 || length !== batch * perItem) {
    throw new InternalError(`Expected ${batch} x ${perItem} ${what}, received ${length} values`);
  }
}
