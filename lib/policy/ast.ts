// What one policy file says, as parsed, before any cross-file rule is applied. Every
// declaration keeps its 1-based line number so later errors can point at it.
import type { LimitKey } from './limits.js';
import type { Interpreter, Member } from './names.js';

export type VersionStatus = 'approved' | 'superseded' | 'revoked';
export const VERSION_STATUSES: readonly VersionStatus[] = Object.freeze(['approved', 'superseded', 'revoked']);

/** The status part of a version line. */
export type StatusSpec =
  | { readonly status: 'approved' }
  | { readonly status: 'superseded'; readonly by: string }
  | { readonly status: 'revoked'; readonly reason: string };

export type VersionDecl = StatusSpec & {
  readonly version: string;
  readonly measurements: readonly string[];
  readonly line: number;
};

export interface GroupDecl {
  readonly name: string;
  readonly members: readonly Member[];
  readonly line: number;
}

export interface VmsDecl {
  /** `vms all`: every VM. */
  readonly all: boolean;
  readonly members: readonly Member[];
  readonly line: number;
}

export interface BinaryDecl {
  readonly name: string;
  readonly line: number;
  /** The keys the `limits` line gives (others take DEFAULT_LIMITS); undefined without one. */
  readonly limits: { readonly values: Readonly<Partial<Record<LimitKey, number>>>; readonly line: number } | undefined;
  readonly interpreter: { readonly value: Interpreter; readonly line: number } | undefined;
  readonly vms: readonly VmsDecl[];
  readonly versions: readonly VersionDecl[];
}

export interface PolicyFileAst {
  readonly path: string;
  readonly groups: readonly GroupDecl[];
  readonly binary: BinaryDecl | undefined;
}
