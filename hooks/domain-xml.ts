// What the hook needs from the domain XML libvirt writes on its stdin: the domain's name and
// UUID, and our opt-in element, <vo:offload enabled="yes" required="no" port="virt-offload.0"/>
// directly inside /domain/metadata, in our namespace (any prefix). Nothing else is kept.
//
// A small strict reader, not a general parser: it checks the whole document is well-formed
// XML (one root, tags balanced, attributes quoted and unique, namespace prefixes bound,
// comments, CDATA and processing instructions closed, no characters XML forbids) and knows
// only the five predefined entities and character references. Any DOCTYPE (the only place
// entities could be declared) is refused outright, so no entity trick (billion laughs, external
// entities) can get in. Why not sax, which the first version used: loading it cost the hook
// ~2 ms of its ~10 ms over Node's start-up on every domain start (bench/hook); test/hooks
// checks this reader against sax on the same documents. Values are returned as data; the hook
// never builds a command from them.

/** Our metadata namespace (shared with lib/libvirt, which writes the element). */
export const OFFLOAD_NAMESPACE = 'http://virt-offload.org/xmlns/domain/1.0';
export const OFFLOAD_ELEMENT = 'offload';
export const DEFAULT_PORT = 'virt-offload.0';

/** Longest domain XML the hook parses (libvirt's are a few KiB; 1 MiB is generous). */
export const MAX_DOMAIN_XML = 1024 * 1024;
/** Deepest element nesting accepted (libvirt's domain XML is under 10 levels). */
const MAX_DEPTH = 64;
const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';

export interface OffloadOptIn {
  /** enabled="yes": the only value that opts in. */
  readonly enabled: boolean;
  /** required="yes": the domain must not start without the offload device. */
  readonly required: boolean;
  /** The port name the guest should see. */
  readonly port: string;
  /** Attribute values we did not understand (the element still counts, failing closed on required). */
  readonly problems: readonly string[];
}

export interface DomainFacts {
  readonly name: string | undefined;
  readonly uuid: string | undefined;
  /** undefined: the domain has no <vo:offload> element. */
  readonly offload: OffloadOptIn | undefined;
}

export class DomainXmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DomainXmlError';
  }
}

// XML 1.0 (fifth edition) names, its NameStartChar and NameChar ranges exactly except the
// characters beyond U+FFFF (sax refuses those too), as namespace-qualified names (an optional
// prefix and one colon). Other applications may put
// any such name into a domain's metadata; a narrower set refused their documents, and with
// them a domain's required="yes".
const NAME_START = 'A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD';
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
const NCNAME = `[${NAME_START}][${NAME_CHAR}]*`;
const NAME = new RegExp(`${NCNAME}(?::${NCNAME})?`, 'uy');
const SPACE = /[ \t\r\n]*/y;
const FORBIDDEN_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const REFERENCE = /&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));/y;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

interface Element {
  readonly qname: string;
  /** '' for no namespace, else `{uri}`: how the path below names it. */
  readonly key: string;
  readonly prefixes: Map<string, string>;
}

/** Parse a libvirt domain XML document; throws DomainXmlError when it is not one we accept. */
export function readDomainFacts(xml: string): DomainFacts {
  if (xml.length > MAX_DOMAIN_XML) throw new DomainXmlError(`domain XML is ${xml.length} characters, more than the ${MAX_DOMAIN_XML} accepted`);
  const bad = FORBIDDEN_CHARS.exec(xml);
  if (bad !== null) throw new DomainXmlError(`not well-formed XML: character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')} at offset ${bad.index}`);
  const fail = (what: string, at: number): never => {
    throw new DomainXmlError(`not well-formed XML: ${what} at offset ${at}`);
  };

  /** Text with its references resolved (raw text: no '<'; '&' only as a known reference). */
  const decode = (raw: string, at: number): string => {
    if (!raw.includes('&')) return raw;
    let out = '';
    let i = 0;
    for (;;) {
      const amp = raw.indexOf('&', i);
      if (amp === -1) return out + raw.slice(i);
      out += raw.slice(i, amp);
      REFERENCE.lastIndex = amp;
      const m = REFERENCE.exec(raw);
      if (m === null) return fail(`an entity reference other than &lt; &gt; &amp; &quot; &apos; or a character reference`, at + amp);
      if (m[1] !== undefined) out += PREDEFINED[m[1]]!;
      else {
        const code = m[2] !== undefined ? Number(m[2]) : parseInt(m[3]!, 16);
        const ok = code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
        if (!ok) return fail(`a character reference to a character XML forbids`, at + amp);
        out += String.fromCodePoint(code);
      }
      i = REFERENCE.lastIndex;
    }
  };

  const stack: Element[] = [];
  const path: string[] = [];
  let sawRoot = false;
  let name: string | undefined;
  let uuid: string | undefined;
  let text: string[] | undefined;
  let offload: OffloadOptIn | undefined;
  let i = 0;

  const skipSpace = (): void => {
    SPACE.lastIndex = i;
    SPACE.exec(xml);
    i = SPACE.lastIndex;
  };
  const readName = (what: string): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(xml);
    if (m === null) return fail(`expected ${what}`, i);
    i = NAME.lastIndex;
    return m[0];
  };
  const resolve = (prefix: string, prefixes: Map<string, string>, at: number): string => {
    if (prefix === 'xml') return XML_NAMESPACE;
    const uri = prefixes.get(prefix);
    // No default namespace declared: unprefixed names are in no namespace.
    if (prefix === '') return uri ?? '';
    if (uri === undefined) return fail(`unbound namespace prefix ${JSON.stringify(prefix)}`, at);
    return uri;
  };

  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const end = lt === -1 ? xml.length : lt;
    if (end > i) {
      // Character data.
      const raw = xml.slice(i, end);
      if (stack.length === 0) {
        if (!/^[ \t\r\n]*$/.test(raw)) fail('text outside the root element', i);
      } else {
        if (raw.includes(']]>')) fail("']]>' in text", i + raw.indexOf(']]>'));
        const value = decode(raw, i);
        text?.push(value);
      }
      i = end;
      continue;
    }
    if (xml.startsWith('<?', i)) {
      const close = xml.indexOf('?>', i + 2);
      if (close === -1) fail('unterminated processing instruction', i);
      i += 2;
      const target = readName('a processing instruction target');
      if (target.toLowerCase() === 'xml' && i - target.length - 2 !== 0) fail('an XML declaration not at the start', i);
      i = close + 2;
      continue;
    }
    if (xml.startsWith('<!--', i)) {
      const close = xml.indexOf('-->', i + 4);
      if (close === -1) fail('unterminated comment', i);
      if (xml.slice(i + 4, close).includes('--') || xml[close - 1] === '-') fail("'--' inside a comment", i);
      i = close + 3;
      continue;
    }
    if (xml.startsWith('<![CDATA[', i)) {
      if (stack.length === 0) fail('CDATA outside the root element', i);
      const close = xml.indexOf(']]>', i + 9);
      if (close === -1) fail('unterminated CDATA section', i);
      text?.push(xml.slice(i + 9, close));
      i = close + 3;
      continue;
    }
    if (xml.startsWith('<!DOCTYPE', i)) throw new DomainXmlError('domain XML has a DOCTYPE (refused: it could declare entities)');
    if (xml.startsWith('<!', i)) fail('a markup declaration', i);
    if (xml.startsWith('</', i)) {
      const at = i;
      i += 2;
      const qname = readName('an element name');
      skipSpace();
      if (xml[i] !== '>') fail(`expected '>' to close </${qname}`, i);
      i++;
      const open = stack.pop();
      if (open === undefined || open.qname !== qname) fail(`</${qname}> does not close ${open === undefined ? 'any element' : `<${open.qname}>`}`, at);
      closeElement();
      continue;
    }
    // A start tag.
    const at = i;
    i++;
    const qname = readName('an element name');
    const attributes: Array<{ qname: string; value: string; at: number }> = [];
    let selfClosing = false;
    for (;;) {
      const before = i;
      skipSpace();
      if (xml.startsWith('/>', i)) {
        selfClosing = true;
        i += 2;
        break;
      }
      if (xml[i] === '>') {
        i++;
        break;
      }
      if (i === before) fail(`expected whitespace, '>' or '/>' in <${qname}>`, i);
      const attrAt = i;
      const attr = readName('an attribute name');
      skipSpace();
      if (xml[i] !== '=') fail(`expected '=' after attribute ${attr}`, i);
      i++;
      skipSpace();
      const quote = xml[i];
      if (quote !== '"' && quote !== "'") fail(`attribute ${attr}: value not quoted`, i);
      const close = xml.indexOf(quote!, i + 1);
      if (close === -1) fail(`attribute ${attr}: unterminated value`, i);
      const raw = xml.slice(i + 1, close);
      if (raw.includes('<')) fail(`attribute ${attr}: '<' in its value`, i);
      if (attributes.some((a) => a.qname === attr)) fail(`attribute ${attr} given twice`, attrAt);
      // Attribute-value normalization: each whitespace character becomes a space.
      attributes.push({ qname: attr, value: decode(raw, i + 1).replace(/[\t\r\n]/g, ' '), at: attrAt });
      i = close + 1;
    }
    if (stack.length === 0 && sawRoot) fail('a second root element', at);
    if (stack.length >= MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`, at);
    const prefixes = new Map(stack.length === 0 ? [] : stack[stack.length - 1]!.prefixes);
    for (const a of attributes) {
      if (a.qname === 'xmlns') prefixes.set('', a.value);
      else if (a.qname.startsWith('xmlns:')) {
        if (a.value === '') fail(`${a.qname}="" (a prefix cannot be unbound)`, a.at);
        prefixes.set(a.qname.slice(6), a.value);
      }
    }
    const colon = qname.indexOf(':');
    const uri = resolve(colon === -1 ? '' : qname.slice(0, colon), prefixes, at);
    const local = colon === -1 ? qname : qname.slice(colon + 1);
    // Unprefixed attributes are in no namespace; prefixed ones must be bound (and not duplicate).
    const plain = new Map<string, string>();
    const expanded = new Set<string>();
    for (const a of attributes) {
      const c = a.qname.indexOf(':');
      if (a.qname === 'xmlns' || a.qname.startsWith('xmlns:')) continue;
      if (c === -1) plain.set(a.qname, a.value);
      else {
        const key = `{${resolve(a.qname.slice(0, c), prefixes, a.at)}}${a.qname.slice(c + 1)}`;
        if (expanded.has(key)) fail(`attribute ${a.qname} given twice (same namespace and name)`, a.at);
        expanded.add(key);
      }
    }
    if (stack.length === 0) {
      if (local !== 'domain' || uri !== '') fail(`root element is <${qname}>, not <domain>`, at);
      sawRoot = true;
    }
    stack.push({ qname, key: uri === '' ? local : `{${uri}}${local}`, prefixes });
    path.push(uri === '' ? local : `{${uri}}${local}`);
    const where = path.join('/');
    if (where === 'domain/name' || where === 'domain/uuid') text = [];
    else if (path.length === 3 && path[1] === 'metadata' && uri === OFFLOAD_NAMESPACE && local === OFFLOAD_ELEMENT) {
      if (offload !== undefined) fail(`two <${OFFLOAD_ELEMENT}> elements of ${OFFLOAD_NAMESPACE} in <metadata>`, at);
      offload = readOptIn(plain);
    }
    if (selfClosing) {
      stack.pop();
      closeElement();
    }
  }
  if (stack.length > 0) fail(`<${stack[stack.length - 1]!.qname}> is not closed`, xml.length);
  if (!sawRoot) fail('no root element', xml.length);
  return { name, uuid, offload };

  function closeElement(): void {
    const where = path.join('/');
    if (text !== undefined && (where === 'domain/name' || where === 'domain/uuid')) {
      const value = text.join('').trim();
      if (where === 'domain/name') {
        if (name !== undefined) throw new DomainXmlError('two <name> elements');
        name = value;
      } else {
        if (uuid !== undefined) throw new DomainXmlError('two <uuid> elements');
        uuid = value;
      }
      text = undefined;
    }
    path.pop();
  }
}

function readOptIn(attributes: Map<string, string>): OffloadOptIn {
  const problems: string[] = [];
  const enabledValue = attributes.get('enabled') ?? 'no';
  const enabled = enabledValue === 'yes';
  if (enabledValue !== 'yes' && enabledValue !== 'no') problems.push(`enabled=${JSON.stringify(enabledValue.slice(0, 40))} (expected "yes" or "no"; the domain is not opted in)`);
  const requiredValue = attributes.get('required') ?? 'no';
  // Fail closed: a required value we cannot read counts as required.
  const required = requiredValue !== 'no';
  if (requiredValue !== 'yes' && requiredValue !== 'no') problems.push(`required=${JSON.stringify(requiredValue.slice(0, 40))} (expected "yes" or "no"; treated as "yes")`);
  const port = attributes.get('port') ?? DEFAULT_PORT;
  return { enabled, required, port, problems };
}
