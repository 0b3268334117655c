// Measure a file on the host, optionally passing each canonical chunk on (to write it out).
import { measure, type MeasureOptions, type MeasureResult } from '../measure/index.js';
import { openFileReader } from './file-reader.js';

export type MeasureFileOptions = MeasureOptions;

export async function measureFile(path: string, options: MeasureFileOptions = {}): Promise<MeasureResult> {
  const reader = openFileReader(path);
  try {
    return await measure(reader, options);
  } finally {
    reader.close();
  }
}
