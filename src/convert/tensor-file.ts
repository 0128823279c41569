/**
 * A tensor as a checkpoint file holds it, whatever the format: its dtype, shape and a reader of its
 * bytes; and the checks the format readers share. The readers (safetensors.ts, torch-pickle.ts) and
 * the checkpoint view above them (checkpoint.ts) import it.
 */
import type { RandomAccessFile } from './zip.js';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Absolute path of the file that holds the tensor. */
  file: string;
  /** Little-endian, contiguous (row-major) bytes of this tensor only. */
  read(): Promise<Buffer>;
}

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value);
}

/** A non-negative safe integer: a size, offset or dimension read from a checkpoint. */
export function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** The tensors of one weights file and the open file they are read from. */
export interface TensorFile {
  file: RandomAccessFile;
  tensors: TensorEntry[];
}
