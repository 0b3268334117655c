/** LEB128 of a u32 for building test modules: minimal, or padded to `width` bytes the way Go and wabt's --no-canonicalize do. */
export function leb(value: number, width = 0): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    out.push(rest % 128);
    rest = Math.floor(rest / 128);
  } while (rest !== 0 || out.length < width);
  for (let i = 0; i < out.length - 1; i++) out[i]! |= 0x80;
  return out;
}
