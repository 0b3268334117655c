// The package version, as a constant so the CLI need not read package.json at start-up.
// test/cli/version.test.ts keeps it equal to package.json's "version".
export const VERSION = '0.1.0';
