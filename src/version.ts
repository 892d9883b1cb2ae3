// The version printed by `flanneld --version` and the CNI plugin's VERSION banner. Release builds may
// override it through the FLANNEL_TS_VERSION environment variable at build time (scripts/build.mjs).
export const VERSION: string = "v0.1.0-dev";
