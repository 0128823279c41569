/**
 * The devices the encoders run on, parsed once from what a user writes (`--device`, `device:`) into a
 * typed value that every layer below takes as it is. Pure.
 */
import { UsageError, expectedMessage } from '../errors.js';

/** What a user writes for one device: auto (CUDA when it works, else the CPU), cpu, cuda, cuda:N. */
export type DeviceRequest = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;

/** `--device cuda:all`: one worker process per GPU, each on a shard, merged (src/commands/all-devices.ts). */
export const ALL_DEVICES = 'cuda:all';

/** Where encoders are opened: the CPU, or one CUDA device. */
export type PlacedDevice = { kind: 'cpu' } | { kind: 'cuda'; id: number };

/** A parsed request, with the spelling it was given in, which messages repeat. */
export type Device = ({ kind: 'auto' } | PlacedDevice) & { request: DeviceRequest };
export interface AllDevices { kind: 'all'; request: typeof ALL_DEVICES }

/**
 * The one check of a device name. `all` admits `cuda:all` where the caller can fan out over the GPUs;
 * anywhere else it is refused like any other unknown name.
 */
export function parseDevice(value: unknown): Device;
export function parseDevice(value: unknown, opts: { all: true }): Device | AllDevices;
export function parseDevice(value: unknown, opts: { all?: boolean } = {}): Device | AllDevices {
  if (value === 'auto') return { kind: 'auto', request: value };
  if (value === 'cpu') return { kind: 'cpu', request: value };
  if (value === 'cuda') return { kind: 'cuda', id: 0, request: value };
  if (value === ALL_DEVICES && opts.all) return { kind: 'all', request: ALL_DEVICES };
  const match = typeof value === 'string' ? /^cuda:(\d{1,3})$/.exec(value) : null;
  if (match) return { kind: 'cuda', id: Number(match[1]), request: value as DeviceRequest };
  throw new UsageError(expectedMessage('one of auto, cpu, cuda, cuda:N', 'the device', value));
}

/** A placed device as provenance names it: `cpu`, `cuda:0`. */
export function deviceName(device: PlacedDevice): string {
  return device.kind === 'cuda' ? `cuda:${device.id}` : 'cpu';
}
