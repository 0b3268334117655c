// Public face of the host install store. Other modules import only from here.
export { StoreError } from './errors.js';
export type { StoreErrorKind } from './errors.js';
export { list, locate, open, recover, verify } from './inspect.js';
export type { ListedObject, LocatedObject, RecoverOptions, RecoverReport, VerifiedObject, VerifyItem, VerifyReport, VerifyStatus } from './inspect.js';
export { install, installFile, uninstall } from './install.js';
export type { InstallAction, InstallResult, InstallSpec, UninstallResult } from './install.js';
export { DEFAULT_STORE, DIR_MODE, OBJECT_MODE, openStore } from './layout.js';
export type { OpenStoreOptions, Store } from './layout.js';
export type { Manifest } from './manifest.js';
export { reconcile } from './reconcile.js';
export type { ByteSource, ReconcileOptions, ReconcileRecord, ReconcileSummary } from './reconcile.js';
