/**
 * The one place that decides where the encoders run, falls back to the CPU when `--device auto` meets
 * a GPU that cannot be used, and records what ran (Placement, which the provenance reports).
 *
 * For `auto` the device is guessed first from whether the CUDA provider's libraries load (cheap, no
 * model needed, onnxruntime not loaded), so only one model variant is converted: fp16 with fused
 * attention for CUDA, fp32 for the CPU, unless a precision is given. If no GPU session starts after all,
 * the CPU opens instead, with the CPU's variant where it differs and can be made (a converted folder runs
 * as it is; a precision asked for is kept). A converted folder that lacks the precision asked for is
 * refused, never run at another precision.
 */
import { UsageError } from '../errors.js';
import { CudaUnavailableError, cudaProviderProblem, cudaProviderState, type CudaProviderState } from '../encoder/cuda-provider.js';
import { deviceName, type PlacedDevice } from '../encoder/device.js';
import type { EncoderSessions, OpenEncodersOptions } from '../encoder/session.js';
import { encoderVariant, type ModelManifest, type PrecisionChoice } from '../model-format.js';
import { describeRetry, type HubRetry } from '../model/hub.js';
import { resolveModel, type ModelSource } from '../model/registry.js';
import { ClipTokenizer } from '../tokenizer/clip-tokenizer.js';
import type { ResolvedScorerOptions } from './options.js';
import { scorerModelProblem } from '../scorers/scorers.js';

/** Where the encoders run, as opened: what the provenance reports, not what was asked for. */
export interface Placement {
  device: PlacedDevice;
  /** `cpu`, `cuda:0`. */
  name: string;
  executionProvider: string;
  onnxruntimeVersion: string;
  /** Why `auto` ended on the CPU, when it did. */
  fallbackReason?: string;
}

export type OpenEncoders<S extends EncoderSessions = EncoderSessions> = (modelDir: string, manifest: ModelManifest, opts: OpenEncodersOptions) => Promise<S>;

export interface OpenedModel<S extends EncoderSessions = EncoderSessions> {
  dir: string;
  manifest: ModelManifest;
  sessions: S;
  placement: Placement;
  /** Read while the encoders open; awaited once they are, so that a session error is the one reported. */
  tokenizer: Promise<ClipTokenizer>;
}

/**
 * The line `--device auto` prints when it ends on the CPU. A warning, printed even in CI, when the CUDA
 * provider's libraries load, for then a GPU run was evidently meant; an informational line (terminal
 * only) otherwise: one short line where the provider is simply not installed, the ordinary CPU machine
 * (`--device cuda` names what is missing), and the loader's reason where it is installed but cannot load.
 */
export function autoFallbackNotice(placement: Pick<Placement, 'executionProvider' | 'fallbackReason'>, provider: CudaProviderState): string | undefined {
  if (!placement.fallbackReason) return undefined;
  if (provider === 'absent') return "device auto: using the CPU (onnxruntime-node's CUDA provider is not installed)";
  return `${provider === 'loads' ? 'warning: ' : ''}device auto: using ${placement.executionProvider} (${placement.fallbackReason})`;
}

/**
 * `onResolved` is told the model the encoders will open, before they do: the caller's own start-up can
 * overlap theirs.
 */
export async function openModel<S extends EncoderSessions>(opts: ResolvedScorerOptions, open: OpenEncoders<S>, providerState: () => CudaProviderState = cudaProviderState,
  onResolved?: (manifest: ModelManifest) => void): Promise<OpenedModel<S>> {
  const { device } = opts;
  const provider = device.kind === 'auto' ? providerState() : undefined;
  // auto where the CUDA provider cannot load: the CPU, for the reason the loader gives, without trying a session.
  const unloadable = provider !== undefined && provider !== 'loads' ? cudaProviderProblem() : undefined;
  const first: PlacedDevice = device.kind === 'cuda' ? device : device.kind === 'auto' && provider === 'loads' ? { kind: 'cuda', id: 0 } : { kind: 'cpu' };
  const onRetry = (e: HubRetry) => opts.log(`warning: ${describeRetry(e)}`);
  const pulling = { onRetry, onProgress: opts.onModelProgress, signal: opts.signal };
  const model = await resolveModel(opts.model, { ...encoderVariant(opts.precision, first.kind === 'cuda'), ...pulling });
  if (model.source.kind === 'converted') checkConvertedPrecision(opts.precision, model.dir, model.manifest);
  checkScorerFits(opts, model.dir, model.manifest);
  onResolved?.(model.manifest);
  let opened: OpenedModel<S>;
  try {
    opened = await openOn(model, first, opts, open, unloadable && cpuFallback(unloadable));
  } catch (err) {
    if (!(err instanceof CudaUnavailableError)) throw err;
    if (device.kind === 'cuda') throw new UsageError(`Device ${device.request} was requested, but ${err.reason}`, { cause: err });
    const wanted = encoderVariant(opts.precision, false);
    // Only a checkpoint or a named model can be converted again, into the variant that suits the CPU.
    const cpuModel = model.source.kind === 'converted' || wanted.precision === model.manifest.precision ? model : await resolveModel(opts.model, { ...wanted, ...pulling });
    opened = await openOn(cpuModel, { kind: 'cpu' }, opts, open, cpuFallback(err.reason));
  }
  const notice = provider && autoFallbackNotice(opened.placement, provider);
  if (notice) opts.log(notice);
  return opened;
}

function cpuFallback(reason: string): string {
  return `CUDA unavailable, using CPU: ${reason}`;
}

async function openOn<S extends EncoderSessions>(model: { dir: string; manifest: ModelManifest; source: ModelSource }, device: PlacedDevice, opts: ResolvedScorerOptions,
  open: OpenEncoders<S>, fallbackReason: string | undefined): Promise<OpenedModel<S>> {
  // Read on this thread while the encoder thread builds its sessions: together they are most of a cached
  // rerun's start-up.
  const tokenizer = readTokenizer(model.dir);
  const imageOutput = opts.scorerDescription.formula.kind === 'image-score' ? { imageOutput: 'score' as const } : {};
  const sessions = await open(model.dir, model.manifest, { device, threads: opts.threads, ...imageOutput });
  const placement: Placement = {
    device, name: deviceName(device), executionProvider: sessions.executionProvider, onnxruntimeVersion: sessions.onnxruntimeVersion,
    ...(fallbackReason !== undefined ? { fallbackReason } : {}),
  };
  return { dir: model.dir, manifest: model.manifest, sessions, placement, tokenizer };
}

/** The tokenizer, read now and awaited later; a rejection nobody awaits (the sessions failed first) is not an unhandled one. */
function readTokenizer(dir: string): Promise<ClipTokenizer> {
  const tokenizer = ClipTokenizer.fromDir(dir);
  tokenizer.catch(() => undefined);
  return tokenizer;
}

/** A folder made for another scorer would give numbers that look like scores and are not: refused, naming both. */
function checkScorerFits(opts: ResolvedScorerOptions, dir: string, manifest: ModelManifest): void {
  const scorer = opts.scorerDescription;
  const problem = scorerModelProblem(scorer, manifest);
  if (problem) throw new UsageError(`The scorer ${scorer.name} cannot run the model ${manifest.name} (${dir}): ${problem}`);
}

/** A precision asked for by name must be the one that runs; `auto` takes what the folder holds. */
function checkConvertedPrecision(asked: PrecisionChoice, dir: string, manifest: ModelManifest): void {
  if (asked === 'auto' || asked === manifest.precision) return;
  const checkpoint = manifest.source.dir ?? '<checkpoint folder>';
  const hub = manifest.source.repo ? ` or pass --model ${manifest.source.repo}${manifest.source.revision ? `@${manifest.source.revision}` : ''} --precision ${asked}, which converts into the cache;` : '';
  throw new UsageError(
    `--precision ${asked} was asked for, but the model folder ${dir} holds ${manifest.precision} encoders only, and a converted folder runs as it is. ` +
      `Build ${asked} encoders from its checkpoint: \`pickscore model convert ${checkpoint} --tokenizer ${dir} --out <new folder> --precision ${asked}\` and pass that folder to --model;${hub} ` +
      `or pass --precision ${manifest.precision} (or auto) to run the folder's ${manifest.precision} encoders`,
  );
}
