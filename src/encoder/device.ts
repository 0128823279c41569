/** The device names scoring accepts (`auto`, `cpu`, `cuda`, `cuda:N`), parsed once for options and sessions alike. Pure. */
import { UsageError, expectedMessage } from '../errors.js';

export type DeviceRequest = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export interface ParsedDevice { kind: 'auto' | 'cpu' | 'cuda'; deviceId: number }

export function parseDeviceRequest(device: unknown): ParsedDevice {
  if (device === 'auto' || device === 'cpu') return { kind: device, deviceId: 0 };
  if (device === 'cuda') return { kind: 'cuda', deviceId: 0 };
  const match = typeof device === 'string' ? /^cuda:(\d{1,3})$/.exec(device) : null;
  if (match) return { kind: 'cuda', deviceId: Number(match[1]) };
  throw new UsageError(expectedMessage('one of auto, cpu, cuda, cuda:N', 'the device', device));
}
