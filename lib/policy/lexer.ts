// Splits one policy line into tokens. Rules: spaces and tabs separate tokens; `#` outside
// quotes starts a comment; a token is either bare, wholly double-quoted ("a b"), or
// KEY="value". Inside quotes only \" and \\ are escapes. Anything else (a quote in the middle
// of a word, text glued to a closing quote, an unknown escape) is refused, not guessed at.

export interface Token {
  /** The token's value with quotes removed and escapes resolved. */
  readonly text: string;
  /** Index in `text` where quoted content starts (0 for "…", key length + 1 for KEY="…"); -1 if bare. */
  readonly quotedFrom: number;
}

export interface LexedLine {
  readonly tokens: readonly Token[];
  /** The comment text after `#` (without the `#`), if the line has one. */
  readonly comment: string | undefined;
  /** Offset of the comment's `#` in the line, or the line length. */
  readonly codeEnd: number;
}

/**
 * Characters refused anywhere in a policy file, comments included: control characters other
 * than tab (CR too: one line ending only), C1 controls, and the invisible or direction-changing
 * characters that make reviewed text differ from what is parsed ("Trojan Source").
 */
const FORBIDDEN = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]/;

/** The same set less LF: one scan of a whole file tells whether any line needs the check. */
export const FORBIDDEN_IN_TEXT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]/;

export function hasForbiddenCharacter(text: string): boolean {
  return FORBIDDEN_IN_TEXT.test(text);
}

export function forbiddenCharacter(line: string): string | undefined {
  const m = FORBIDDEN.exec(line);
  if (m === null) return undefined;
  const code = m[0].codePointAt(0)!;
  const name = code === 0x0d ? 'carriage return (use LF line endings)' : 'character';
  return `forbidden ${name} U+${code.toString(16).toUpperCase().padStart(4, '0')} at column ${m.index + 1}`;
}

export type LexResult = { ok: true; line: LexedLine } | { ok: false; problem: string };

const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';
/** Finds where a bare run ends (a blank, '#' or '"'); a regex scan beats a char loop here. */
const BARE_END = /[ \t#"]/g;

export function lexLine(line: string): LexResult {
  const buffer = new TokenBuffer();
  const problem = buffer.lex(line);
  if (problem !== undefined) return { ok: false, problem };
  const tokens: Token[] = buffer.tokens.slice(0, buffer.count).map((t) => ({ text: t.text, quotedFrom: t.quotedFrom }));
  const comment = buffer.codeEnd < line.length ? line.slice(buffer.codeEnd + 1) : undefined;
  return { ok: true, line: { tokens, comment, codeEnd: buffer.codeEnd } };
}

/**
 * The tokens of one line, in token objects that are reused from line to line: the parser
 * lexes every line of a large repository, and a fresh array and objects per line were most of
 * what it allocated. `tokens[0..count)` are this line's; a token must not be kept past the line.
 */
export class TokenBuffer {
  readonly tokens: { text: string; quotedFrom: number }[] = [];
  count = 0;
  /** Offset of the comment's `#`, or the line length. */
  codeEnd = 0;

  /** Lex `line`; undefined when it lexes, else the problem (the tokens are then meaningless). */
  lex(line: string): string | undefined {
    let count = 0;
    let i = 0;
    const n = line.length;
    this.codeEnd = n;
    while (i < n) {
      const c = line.charCodeAt(i);
      if (c === 0x20 || c === 0x09) {
        i++;
        continue;
      }
      if (c === 0x23) {
        this.codeEnd = i;
        break;
      }
      // The bare part runs to a blank, a '#' or a quote; slicing it whole keeps this fast.
      BARE_END.lastIndex = i;
      const j = BARE_END.test(line) ? BARE_END.lastIndex - 1 : n;
      let text = line.slice(i, j);
      let quotedFrom = -1;
      i = j;
      if (line[i] === '"') {
        // A quote may open a token or follow the '=' of a bare KEY= prefix, nothing else.
        if (!(text === '' || (text.endsWith('=') && text.indexOf('=') === text.length - 1))) {
          return `unexpected '"' in the middle of '${text}"' (quote the whole value, or write KEY="value")`;
        }
        const quoted = readQuoted(line, i + 1);
        if (!quoted.ok) return quoted.problem;
        quotedFrom = text.length;
        text += quoted.value;
        i = quoted.end;
        if (i < n && !isBlank(line[i]) && line[i] !== '#') {
          return `unexpected '${line[i]!}' right after a closing quote (separate tokens with a space)`;
        }
      }
      const token = this.tokens[count];
      if (token === undefined) this.tokens.push({ text, quotedFrom });
      else {
        token.text = text;
        token.quotedFrom = quotedFrom;
      }
      count++;
    }
    this.count = count;
    return undefined;
  }
}

function readQuoted(line: string, start: number): { ok: true; value: string; end: number } | { ok: false; problem: string } {
  // Plain runs are sliced whole; only escapes are joined (a reason read character by
  // character was a chain of dozens of small strings).
  let value = '';
  let run = start;
  for (let i = start; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x22) return { ok: true, value: value + line.slice(run, i), end: i + 1 };
    if (c !== 0x5c) continue;
    const next = line[i + 1];
    if (next !== '"' && next !== '\\') {
      return { ok: false, problem: next === undefined ? 'unterminated quoted value' : `unknown escape '\\${next}' in a quoted value (only \\" and \\\\)` };
    }
    value += line.slice(run, i) + next;
    i++;
    run = i + 1;
  }
  return { ok: false, problem: 'unterminated quoted value (missing closing ")' };
}

/**
 * `text` as a string of its own, for anything kept in a snapshot. A token is a slice of its
 * file's text, and V8 keeps a slice of 13 or more characters as a pointer into the whole text:
 * one kept measurement would keep its whole policy file in memory. Joining two parts and
 * trimming makes V8 copy the characters into a new flat string (trim flattens and, with
 * nothing to trim, returns that flat copy). Shorter slices are copies already. The result
 * equals `text` whatever the engine does; only the memory it holds depends on it.
 */
export function ownText(text: string): string {
  if (text.length < 13) return text;
  const copy = (text.slice(0, 1) + text.slice(1)).trim();
  return copy.length === text.length ? copy : text;
}

/** Split a KEY=VALUE token; undefined when the token has no `=` before any quoted part. */
export function splitKeyValue(token: Token): { key: string; value: string } | undefined {
  const eq = token.text.indexOf('=');
  if (eq <= 0 || (token.quotedFrom >= 0 && eq >= token.quotedFrom)) return undefined;
  return { key: token.text.slice(0, eq), value: token.text.slice(eq + 1) };
}

/** Write a value so that lexLine reads it back unchanged: bare when safe, otherwise quoted. */
export function quoteIfNeeded(value: string): string {
  return /^[A-Za-z0-9._+~:/@%,-]+$/.test(value) ? value : quote(value);
}

export function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
