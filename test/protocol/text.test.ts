// clipText/wellFormed (lib/text.ts): a capped text is still text. A cut inside a surrogate pair
// once made the host's ERROR fail its own encoding check, and its request went unanswered.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { clipText, wellFormed } from '../../lib/text.js';

const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

test('a cut never splits a surrogate pair; the mark counts in the length', () => {
  const text = 'a' + '\u{1F600}'.repeat(60);
  for (let max = 4; max <= 40; max++) {
    const clipped = clipText(text, max, '...');
    assert.ok(clipped.length <= max, `max ${max}: ${clipped.length}`);
    assert.not.ok(LONE.test(clipped), `max ${max}`);
    assert.ok(clipped.endsWith('...'));
    assert.ok(text.startsWith(clipped.slice(0, -3)));
  }
  // No room for the mark: the cut alone, still whole characters.
  assert.is(clipText(text, 3, '...'), 'a\u{1F600}');
  assert.is(clipText(text, 2, '...'), 'a');
  assert.is(clipText('\u{1F600}\u{1F600}', 3, '...'), '\u{1F600}');
  assert.is(clipText('\u{1F600}\u{1F600}', 1, '...'), '');
  assert.is(clipText('short', 10), 'short');
  assert.is(clipText('0123456789', 10), '0123456789');
  assert.is(clipText('0123456789x', 10), '012345678…');
});

test('any string, any length: at most max units, well-formed, a prefix of the text plus the mark', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.integer({ min: 3, max: 90 }), (s, max) => {
      const text = wellFormed(s);
      const clipped = clipText(text, max);
      if (LONE.test(clipped) || clipped.length > max) return false;
      if (text.length <= max) return clipped === text;
      return clipped.endsWith('…') && text.startsWith(clipped.slice(0, -1)) && clipped.length >= max - 2;
    }),
    { numRuns: 3000 },
  );
});

test('wellFormed replaces lone surrogates only', () => {
  assert.is(wellFormed('a\uD83Db'), 'a\uFFFDb');
  assert.is(wellFormed('a\uDE00b'), 'a\uFFFDb');
  assert.is(wellFormed('\uDE00\uD83D'), '\uFFFD\uFFFD');
  assert.is(wellFormed('ok \u{1F600}'), 'ok \u{1F600}');
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => wellFormed(s) === s));
});

test.run();
