// CRC-32 as zlib, gzip, PNG and busybox `crc32` compute it (reflected polynomial 0xEDB88320,
// initial value and final xor 0xFFFFFFFF). Chosen because a busybox guest can compute it with
// its `crc32` applet (busybox has no `cksum` in Debian's static build), so the simplest client
// is a shell script. Slicing-by-4 keeps it near memory speed for 64 KiB DATA frames.

const TABLES: readonly Uint32Array[] = makeTables();

function makeTables(): Uint32Array[] {
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  const tables = [t0];
  for (let s = 1; s < 4; s++) {
    const prev = tables[s - 1] as Uint32Array;
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      const p = prev[n] as number;
      t[n] = ((p >>> 8) ^ (t0[p & 0xff] as number)) >>> 0;
    }
    tables.push(t);
  }
  return tables;
}

/** CRC-32 of `bytes`, continuing from `crc` (the result of an earlier call) when given. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = 0;
  const end4 = bytes.length - (bytes.length % 4);
  for (; i < end4; i += 4) {
    c ^= (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24);
    c = (t3[c & 0xff] as number) ^ (t2[(c >>> 8) & 0xff] as number) ^ (t1[(c >>> 16) & 0xff] as number) ^ (t0[c >>> 24] as number);
  }
  for (; i < bytes.length; i++) c = (t0[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}
