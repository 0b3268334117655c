// The part of sax (1.x) lib/libvirt/xml.ts uses; sax ships no types. (hooks/sax.d.ts declares
// the same module for the hook; the declarations merge.)
declare module 'sax' {
  export interface QualifiedAttribute {
    name: string;
    value: string;
    prefix: string;
    local: string;
    uri: string;
  }
  export interface QualifiedTag {
    name: string;
    prefix: string;
    local: string;
    uri: string;
    attributes: Record<string, QualifiedAttribute>;
    isSelfClosing: boolean;
  }
  export interface SAXOptions {
    xmlns?: boolean;
    strictEntities?: boolean;
    position?: boolean;
    trim?: boolean;
  }
  export interface SAXParser {
    onerror: (err: Error) => void;
    onopentag: (tag: QualifiedTag) => void;
    onclosetag: (name: string) => void;
    ontext: (text: string) => void;
    oncdata: (text: string) => void;
    oncomment: (text: string) => void;
    ondoctype: (doctype: string) => void;
    onprocessinginstruction: (pi: { name: string; body: string }) => void;
    write(chunk: string): SAXParser;
    close(): SAXParser;
  }
  export function parser(strict: boolean, options?: SAXOptions): SAXParser;
}
