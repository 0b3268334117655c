// What the hook needs from the domain XML libvirt writes on its stdin: the domain's name and
// UUID, and our opt-in element, <vo:offload enabled="yes" required="no" port="virt-offload.0"/>
// directly inside /domain/metadata, in our namespace (any prefix). Nothing else is read.
//
// Parsed with sax in strict mode (a real XML parser: well-formedness, namespace binding),
// with only the five predefined XML entities: a DOCTYPE (the only place entities could be
// declared) is refused outright, so no entity trick (billion laughs, external entities) can
// get in. Values are returned as data; the hook never builds a command from them.
import sax, { type QualifiedAttribute } from 'sax';

/** Our metadata namespace (shared with lib/libvirt, which writes the element). */
export const OFFLOAD_NAMESPACE = 'http://virt-offload.org/xmlns/domain/1.0';
export const OFFLOAD_ELEMENT = 'offload';
export const DEFAULT_PORT = 'virt-offload.0';

/** Longest domain XML the hook parses (libvirt's are a few KiB; 1 MiB is generous). */
export const MAX_DOMAIN_XML = 1024 * 1024;
/** Deepest element nesting accepted (libvirt's domain XML is under 10 levels). */
const MAX_DEPTH = 64;

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

/** Parse a libvirt domain XML document; throws DomainXmlError when it is not one we accept. */
export function readDomainFacts(xml: string): DomainFacts {
  if (xml.length > MAX_DOMAIN_XML) throw new DomainXmlError(`domain XML is ${xml.length} characters, more than the ${MAX_DOMAIN_XML} accepted`);
  const parser = sax.parser(true, { xmlns: true, strictEntities: true, position: true });
  // The path of local names (namespace-checked where it matters) from the root to the current element.
  const path: string[] = [];
  let name: string | undefined;
  let uuid: string | undefined;
  let text: string[] | undefined;
  let offload: OffloadOptIn | undefined;
  let failure: string | undefined;
  const fail = (why: string): void => {
    failure ??= why;
  };

  parser.onerror = (err) => {
    fail(`not well-formed XML: ${err.message.split('\n')[0]}`);
  };
  parser.ondoctype = () => fail('domain XML has a DOCTYPE (refused: it could declare entities)');
  parser.onopentag = (tag) => {
    if (failure !== undefined) return;
    if (path.length === 0 && (tag.local !== 'domain' || tag.uri !== '')) fail(`root element is <${tag.name}>, not <domain>`);
    path.push(tag.uri === '' ? tag.local : `{${tag.uri}}${tag.local}`);
    if (path.length > MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`);
    const where = path.join('/');
    if (where === 'domain/name' || where === 'domain/uuid') text = [];
    else if (path.length === 3 && path[1] === 'metadata' && tag.uri === OFFLOAD_NAMESPACE && tag.local === OFFLOAD_ELEMENT) {
      if (offload !== undefined) fail(`two <${OFFLOAD_ELEMENT}> elements of ${OFFLOAD_NAMESPACE} in <metadata>`);
      else offload = readOptIn(tag.attributes);
    }
  };
  parser.ontext = (t) => text?.push(t);
  parser.oncdata = (t) => text?.push(t);
  parser.onclosetag = () => {
    const where = path.join('/');
    if (text !== undefined && (where === 'domain/name' || where === 'domain/uuid')) {
      const value = text.join('').trim();
      if (where === 'domain/name') {
        if (name !== undefined) fail('two <name> elements');
        name = value;
      } else {
        if (uuid !== undefined) fail('two <uuid> elements');
        uuid = value;
      }
      text = undefined;
    }
    path.pop();
  };

  try {
    parser.write(xml).close();
  } catch (err) {
    // sax throws from write() when onerror does not resume it.
    fail(`not well-formed XML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (failure !== undefined) throw new DomainXmlError(failure);
  return { name, uuid, offload };
}

function readOptIn(attributes: Record<string, QualifiedAttribute>): OffloadOptIn {
  const problems: string[] = [];
  // Unprefixed attributes only (an attribute in another namespace is someone else's).
  const attr = (local: string): string | undefined => {
    for (const a of Object.values(attributes)) if (a.local === local && a.prefix === '') return a.value;
    return undefined;
  };
  const enabledValue = attr('enabled') ?? 'no';
  const enabled = enabledValue === 'yes';
  if (enabledValue !== 'yes' && enabledValue !== 'no') problems.push(`enabled=${JSON.stringify(enabledValue.slice(0, 40))} (expected "yes" or "no"; the domain is not opted in)`);
  const requiredValue = attr('required') ?? 'no';
  // Fail closed: a required value we cannot read counts as required.
  const required = requiredValue !== 'no';
  if (requiredValue !== 'yes' && requiredValue !== 'no') problems.push(`required=${JSON.stringify(requiredValue.slice(0, 40))} (expected "yes" or "no"; treated as "yes")`);
  const port = attr('port') ?? DEFAULT_PORT;
  return { enabled, required, port, problems };
}
