// A small XML document model for editing libvirt's domain XML: parsed with sax (strict,
// namespace-aware, only the five predefined entities, DOCTYPE refused, bounded size and depth),
// edited as a tree, written back with every value escaped. Untrusted text (names, paths, port
// names) only ever enters a document as attribute values or text nodes, never spliced in.
import sax from 'sax';
import { VirtOffloadError } from '../errors.js';

export interface XmlElement {
  kind: 'element';
  /** Qualified name as written (prefix:local). */
  name: string;
  local: string;
  /** Namespace URI ('' for none). */
  uri: string;
  /** In document order, xmlns declarations included. */
  attributes: Array<{ name: string; value: string }>;
  children: XmlNode[];
}
export type XmlNode = XmlElement | { kind: 'text'; text: string } | { kind: 'cdata'; text: string } | { kind: 'comment'; text: string };

/** Domain XML we refuse to parse: not well-formed, a DOCTYPE, too big or too deep. */
export class XmlDocumentError extends VirtOffloadError {
  readonly what: string;
  constructor(what: string, message: string) {
    super('EMALFORMED', `${what}: ${message}`);
    this.what = what;
  }
}

/** libvirt's domain XML is a few KiB; this leaves room for big metadata. */
export const MAX_XML_LENGTH = 4 * 1024 * 1024;
const MAX_DEPTH = 64;

/** Parse a document; `what` names it in errors ("domain vm1 (inactive XML)"). */
export function parseXml(xml: string, what: string): XmlElement {
  if (xml.length > MAX_XML_LENGTH) throw new XmlDocumentError(what, `${xml.length} characters, more than the ${MAX_XML_LENGTH} accepted`);
  const parser = sax.parser(true, { xmlns: true, strictEntities: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let failure: string | undefined;
  const fail = (why: string): void => {
    failure ??= why;
  };
  parser.onerror = (err) => fail(`not well-formed XML: ${err.message.split('\n')[0]}`);
  parser.ondoctype = () => fail('has a DOCTYPE (refused: it could declare entities)');
  parser.onopentag = (tag) => {
    if (failure !== undefined) return;
    const el: XmlElement = {
      kind: 'element',
      name: tag.name,
      local: tag.local,
      uri: tag.uri,
      attributes: Object.values(tag.attributes).map((a) => ({ name: a.name, value: a.value })),
      children: [],
    };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(el);
    else if (root) fail('has more than one root element');
    else root = el;
    stack.push(el);
    if (stack.length > MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`);
  };
  parser.onclosetag = () => {
    stack.pop();
  };
  const add = (node: XmlNode): void => {
    stack[stack.length - 1]?.children.push(node);
  };
  parser.ontext = (text) => add({ kind: 'text', text });
  parser.oncdata = (text) => add({ kind: 'cdata', text });
  parser.oncomment = (text) => add({ kind: 'comment', text });
  try {
    parser.write(xml).close();
  } catch (err) {
    fail(`not well-formed XML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (failure !== undefined) throw new XmlDocumentError(what, failure);
  if (!root) throw new XmlDocumentError(what, 'has no root element');
  return root;
}

/** Write a tree back as XML (no declaration). */
export function serializeXml(node: XmlNode): string {
  switch (node.kind) {
    case 'text':
      return escapeText(node.text);
    case 'cdata':
      return `<![CDATA[${node.text.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
    case 'comment':
      return `<!--${node.text.replace(/--/g, '- -')}-->`;
    case 'element': {
      const attrs = node.attributes.map((a) => ` ${a.name}="${escapeAttribute(a.value)}"`).join('');
      if (node.children.length === 0) return `<${node.name}${attrs}/>`;
      return `<${node.name}${attrs}>${node.children.map(serializeXml).join('')}</${node.name}>`;
    }
  }
}

/** A new element without a namespace (libvirt's own elements). */
export function element(name: string, attributes: Record<string, string> = {}, children: XmlNode[] = []): XmlElement {
  return { kind: 'element', name, local: name, uri: '', attributes: Object.entries(attributes).map(([n, value]) => ({ name: n, value })), children };
}

export function childElements(parent: XmlElement, local?: string, uri = ''): XmlElement[] {
  return parent.children.filter((c): c is XmlElement => c.kind === 'element' && (local === undefined || (c.local === local && c.uri === uri)));
}

export function firstChild(parent: XmlElement, local: string, uri = ''): XmlElement | undefined {
  return childElements(parent, local, uri)[0];
}

/** An unprefixed attribute's value. */
export function attribute(el: XmlElement, name: string): string | undefined {
  return el.attributes.find((a) => a.name === name)?.value;
}

export function textContent(el: XmlElement): string {
  return el.children.map((c) => (c.kind === 'text' || c.kind === 'cdata' ? c.text : c.kind === 'element' ? textContent(c) : '')).join('');
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttribute(s: string): string {
  // Whitespace characters other than space would be normalised away by a reader: keep them as references.
  return escapeText(s).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;');
}
