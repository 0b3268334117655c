// Expands VM groups (which may nest) and `vms` lines into resolved scopes, reporting
// undefined groups and nesting loops. Iterative, so deep nesting cannot overflow the stack,
// and bounded: expansion stops with an error past MAX_SCOPE_MEMBERSHIPS.
import type { GroupDecl } from './ast.js';
import { PolicySyntaxError } from './errors.js';
import { FrozenSet } from './frozen.js';
import { formatMember, type Member } from './names.js';
import type { VmScope } from './types.js';

/** Total VM memberships the expansion may materialize (groups and distinct vms lists together). */
export const MAX_SCOPE_MEMBERSHIPS = 4_000_000;
/**
 * Memberships looked at, repeats included: groups that each list the same large groups cost
 * their product in work (1900 parents x 1000 groups x 1000 members, 1.9 G steps: 21 s for a
 * valid 10 MB file) while adding few new memberships. 256 M steps take about 3 s here; a fleet
 * of 20 000 VMs in overlapping facet groups joined by 50 teams takes ~20 M.
 */
export const MAX_SCOPE_VISITS = 256_000_000;

export interface LocatedGroup {
  readonly decl: GroupDecl;
  readonly file: string;
}

export const NO_VMS: VmScope = Object.freeze({ allVms: false, names: new FrozenSet<string>(), uuids: new FrozenSet<string>() });
export const ALL_VMS: VmScope = Object.freeze({ allVms: true, names: new FrozenSet<string>(), uuids: new FrozenSet<string>() });

export class ScopeResolver {
  private readonly groups = new Map<string, LocatedGroup>();
  private readonly resolved = new Map<string, VmScope>();
  private memberships = 0;
  private visits = 0;
  private overflowReported = false;

  /** `groups` must hold each name once (duplicates are reported by the caller). */
  constructor(groups: Iterable<LocatedGroup>, private readonly errors: PolicySyntaxError[]) {
    for (const g of groups) this.groups.set(g.decl.name, g);
  }

  has(name: string): boolean {
    return this.groups.has(name);
  }

  /** Resolve every group, reporting loops and references to groups that do not exist. */
  resolveAll(): ReadonlyMap<string, VmScope> {
    const state = new Map<string, 'walking' | 'done'>();
    for (const g of this.groups.values()) {
      for (const m of g.decl.members) {
        if (m.kind === 'group' && !this.groups.has(m.value)) this.report(g, `group ${g.decl.name}: ${formatMember(m)} is not defined`);
      }
    }
    for (const start of this.groups.values()) {
      if (state.has(start.decl.name)) continue;
      const stack: { g: LocatedGroup; next: number }[] = [{ g: start, next: 0 }];
      state.set(start.decl.name, 'walking');
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const child = this.nextChildGroup(top);
        if (child === undefined) {
          this.resolved.set(top.g.decl.name, this.union(top.g.decl.members));
          state.set(top.g.decl.name, 'done');
          stack.pop();
        } else if (state.get(child.decl.name) === 'walking') {
          this.reportLoop(stack.map((s) => s.g), child);
        } else if (!state.has(child.decl.name)) {
          state.set(child.decl.name, 'walking');
          stack.push({ g: child, next: 0 });
        }
      }
    }
    return this.resolved;
  }

  private nextChildGroup(frame: { g: LocatedGroup; next: number }): LocatedGroup | undefined {
    const members = frame.g.decl.members;
    while (frame.next < members.length) {
      const m = members[frame.next++]!;
      const child = m.kind === 'group' ? this.groups.get(m.value) : undefined;
      if (child !== undefined) return child;
    }
    return undefined;
  }

  private union(members: readonly Member[]): VmScope {
    const names = FrozenSet.open<string>();
    const uuids = FrozenSet.open<string>();
    this.collect(members, names, uuids);
    return Object.freeze({ allVms: false, names: names.seal(), uuids: uuids.seal() });
  }

  /** Fill the open sets of a scope handed out before the groups were resolved, and seal them. */
  fillScope(members: readonly Member[], scope: { readonly names: FrozenSet<string>; readonly uuids: FrozenSet<string> }): void {
    this.collect(members, scope.names, scope.uuids);
    scope.names.seal();
    scope.uuids.seal();
  }

  /**
   * Put the VMs `members` name, groups expanded (resolveAll first), into the open sets
   * `names` and `uuids` (straight in: a set each to copy from cost as much again), counting
   * each new one against the bound.
   */
  private collect(members: readonly Member[], names: FrozenSet<string>, uuids: FrozenSet<string>): void {
    const add = (set: FrozenSet<string>, value: string): void => {
      if (this.memberships >= MAX_SCOPE_MEMBERSHIPS || ++this.visits > MAX_SCOPE_VISITS) return this.reportOverflow();
      if (!set.has(value)) {
        set.put(value);
        this.memberships++;
      }
    };
    for (const m of members) {
      if (m.kind === 'vm') add(names, m.value);
      else if (m.kind === 'uuid') add(uuids, m.value);
      else {
        const inner = this.resolved.get(m.value);
        if (inner === undefined) continue; // undefined or in a loop: reported elsewhere
        if (this.overflowReported) return;
        for (const n of inner.names) add(names, n);
        for (const u of inner.uuids) add(uuids, u);
      }
    }
  }

  private reportLoop(stack: readonly LocatedGroup[], back: LocatedGroup): void {
    const loop = stack.slice(stack.indexOf(back));
    const at = loop.reduce((a, b) => (locationBefore(b, a) ? b : a));
    const k = loop.indexOf(at);
    const names = [...loop.slice(k), ...loop.slice(0, k), at].map((g) => g.decl.name);
    this.report(at, `group ${at.decl.name}: groups nest in a loop (${names.join(' → ')})`);
  }

  private reportOverflow(): void {
    if (this.overflowReported) return;
    this.overflowReported = true;
    const first = [...this.groups.values()].sort((a, b) => (locationBefore(a, b) ? -1 : 1))[0];
    const detail = `VM groups expand to more than ${MAX_SCOPE_MEMBERSHIPS} memberships, or take more than ${MAX_SCOPE_VISITS} steps counting repeats; flatten or split them`;
    this.errors.push(first === undefined ? new PolicySyntaxError('(policy)', 0, detail) : new PolicySyntaxError(first.file, first.decl.line, detail));
  }

  private report(g: LocatedGroup, detail: string): void {
    this.errors.push(new PolicySyntaxError(g.file, g.decl.line, detail));
  }
}

/**
 * Scopes of binaries' vms lists, handed out while files are still being read (before the
 * groups are known), so each file's entries can be made and its parse dropped at once. Lists
 * with the same members share one scope (10k binaries on one group cost one set, not 10k).
 * Its sets stay empty and open until
 * fill(), which expands them in the order first asked for (every scope is expanded after the
 * groups, so the membership count against the bound is the same whatever the file order).
 */
export class PendingScopes {
  private readonly cache = new Map<string, VmScope>();
  private readonly pending: { members: readonly Member[]; scope: { readonly names: FrozenSet<string>; readonly uuids: FrozenSet<string> } }[] = [];

  /** `key` is members.map(formatMember), sorted and joined with spaces. */
  scopeOf(all: boolean, members: readonly Member[], key: string): VmScope {
    if (all) return ALL_VMS;
    if (members.length === 0) return NO_VMS;
    let scope = this.cache.get(key);
    if (scope === undefined) {
      const sets = { names: FrozenSet.open<string>(), uuids: FrozenSet.open<string>() };
      scope = Object.freeze({ allVms: false, names: sets.names, uuids: sets.uuids });
      this.cache.set(key, scope);
      this.pending.push({ members, scope: sets });
    }
    return scope;
  }

  /** Expand and seal every scope handed out; `resolver` has resolved its groups. */
  fill(resolver: ScopeResolver): void {
    for (const p of this.pending) resolver.fillScope(p.members, p.scope);
  }
}

function locationBefore(a: LocatedGroup, b: LocatedGroup): boolean {
  return a.file < b.file || (a.file === b.file && a.decl.line < b.decl.line);
}
