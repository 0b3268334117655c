// Cutting text to a length without breaking it. Strings here are UTF-16: a cut between the two
// halves of a surrogate pair (an emoji, say) leaves a lone surrogate, which is not text. The
// protocol's JSON reader refuses one (docs/protocol.md), so an ERROR or DENIED whose message
// quoted a guest's string cut that way failed its own encoding check, and the request it
// answered went without a reply. Every cap on text that may be sent or logged goes through here.

/** `text` with every lone surrogate replaced by U+FFFD (String.prototype.toWellFormed, ES2024). */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * At most `max` UTF-16 code units of `text`, well-formed; when it had to be cut, it ends with
 * `mark` (counted in `max`; left out when `max` has no room for more) and never inside a
 * surrogate pair.
 */
export function clipText(text: string, max: number, mark = '…'): string {
  if (text.length <= max) return wellFormed(text);
  // No room for the mark: the cut alone.
  const tail = mark.length < max ? mark : '';
  let end = max - tail.length;
  const last = text.charCodeAt(end - 1);
  // A high surrogate at the end of the cut: its low half is past it, so drop both.
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end--;
  return wellFormed(text.slice(0, end)) + tail;
}
