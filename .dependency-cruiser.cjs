// Import rules of DESIGN.md ("Import direction"), checked in CI by `npm run lint:layers`:
//   bin, hooks → daemon, hotplug, guest → adapters (qmp, libvirt, store, exec)
//   → support (io, transport) → pure core (measure, policy, protocol) → errors.
// Never upward, no cycles, adapters do not import each other, other modules import a
// module only through its index.ts barrel, and the pure core touches no Node module
// (except measure/digest.ts for hashing) and no npm package.
const PURE = 'measure|policy|protocol';
const SUPPORT = 'io|transport|patch|git';
const ADAPTERS = 'qmp|libvirt|store|exec|audit';
const ORCHESTRATION = 'daemon|hotplug|guest';
// The policy module's I/O edge (reads work trees and git revisions): outside the pure core's
// rules, may use node: and the io and git support modules, and is imported as
// lib/policy/loader.js (not through the pure barrel, which must typecheck without Node).
const POLICY_LOADER = '^lib/policy/loader[^/]*\\.ts$';
const POLICY_LOADER_MAY_IMPORT = '^lib/(io|git)/';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'Import cycles make layers meaningless.', from: {}, to: { circular: true } },
    {
      name: 'lib-not-to-entry-points',
      severity: 'error',
      comment: 'lib/ is imported by bin/, hooks/, tests, benches, the testbed and examples, never the other way round.',
      from: { path: '^lib/' },
      to: { path: '^(bin|hooks|test|bench|examples|testbed)/' },
    },
    { name: 'errors-is-a-leaf', severity: 'error', from: { path: '^lib/errors\\.ts$' }, to: { path: '^lib/' } },
    {
      name: 'pure-core-imports-down-only',
      severity: 'error',
      from: { path: `^lib/(${PURE})/`, pathNot: POLICY_LOADER },
      to: { path: `^lib/(${SUPPORT}|${ADAPTERS}|${ORCHESTRATION})/` },
    },
    {
      name: 'policy-loader-uses-io-and-git-only',
      severity: 'error',
      from: { path: POLICY_LOADER },
      to: { path: `^lib/(${SUPPORT}|${ADAPTERS}|${ORCHESTRATION})/`, pathNot: POLICY_LOADER_MAY_IMPORT },
    },
    {
      name: 'pure-core-no-node',
      severity: 'error',
      comment: 'The pure core does no I/O; only measure/digest.ts may use node:crypto.',
      from: { path: `^lib/(${PURE})/`, pathNot: ['^lib/measure/digest\\.ts$', POLICY_LOADER] },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'pure-core-no-packages',
      severity: 'error',
      comment: 'Third-party code in the pure core only for hashing (hash-wasm in digest.ts).',
      from: { path: `^lib/(${PURE})/`, pathNot: '^lib/measure/digest\\.ts$' },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'] },
    },
    { name: 'measure-is-the-base-of-the-core', severity: 'error', from: { path: '^lib/measure/' }, to: { path: '^lib/(policy|protocol)/' } },
    { name: 'protocol-independent-of-policy', severity: 'error', from: { path: '^lib/protocol/' }, to: { path: '^lib/policy/' } },
    { name: 'policy-independent-of-protocol', severity: 'error', from: { path: '^lib/policy/' }, to: { path: '^lib/protocol/' } },
    {
      name: 'support-below-adapters',
      severity: 'error',
      from: { path: `^lib/(${SUPPORT})/` },
      to: { path: `^lib/(${ADAPTERS}|${ORCHESTRATION})/` },
    },
    {
      name: 'support-modules-independent',
      severity: 'error',
      from: { path: `^lib/(${SUPPORT})/` },
      to: { path: `^lib/(${SUPPORT})/`, pathNot: '^lib/$1/' },
    },
    {
      name: 'adapters-below-orchestration',
      severity: 'error',
      from: { path: `^lib/(${ADAPTERS})/` },
      to: { path: `^lib/(${ORCHESTRATION})/` },
    },
    {
      name: 'adapters-do-not-import-each-other',
      severity: 'error',
      comment: 'Adapters meet only through interfaces passed in by the orchestration layer.',
      from: { path: `^lib/(${ADAPTERS})/` },
      to: { path: `^lib/(${ADAPTERS})/`, pathNot: '^lib/$1/' },
    },
    {
      name: 'import-modules-through-their-barrel',
      severity: 'error',
      comment: 'Outside a module, import lib/<module>/index.ts only (lib/measure/pure.ts is the Node-free part of its barrel).',
      from: { path: '^(lib/([^/]+)/|bin/|hooks/)' },
      to: { path: '^lib/[^/]+/', pathNot: ['^lib/$2/', '^lib/[^/]+/index\\.ts$', '^lib/policy/loader\\.ts$', '^lib/measure/pure\\.ts$'] },
    },
    {
      name: 'known-modules-only',
      severity: 'error',
      comment: 'A new lib/ module must be placed in a layer here first.',
      from: {},
      to: { path: '^lib/[^/]+/', pathNot: `^lib/(${PURE}|${SUPPORT}|${ADAPTERS}|${ORCHESTRATION})/` },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
