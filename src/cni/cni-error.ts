// CNI errors: what a plugin prints on stdout (and exits non-zero) when a command fails. The codes are the
// well-known ones of the CNI spec; anything else a plugin reports is 999 "internal", as the Go library does.

export const CniCode = {
  incompatibleCniVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironmentVariables: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidNetworkConfig: 7,
  invalidNetns: 8,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  internal: 999,
} as const;

export class CniError extends Error {
  readonly code: number;
  readonly details: string;

  constructor(code: number, msg: string, details = "", opts: { cause?: unknown } = {}) {
    super(msg, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "CniError";
    this.code = code;
    this.details = details;
  }

  /** The error as the CNI spec's JSON object (`details` only when set, as Go's `omitempty`). */
  toJSON(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details !== "") out["details"] = this.details;
    return out;
  }
}

/** Any thrown value as a CniError: CniErrors pass through (never wrapped twice), the rest become 999. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  return new CniError(CniCode.internal, err instanceof Error ? err.message : String(err), "", { cause: err });
}
