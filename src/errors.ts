// One base error for the project: a stable `code` callers can branch on, an operator `hint` saying how to
// fix it, and the `cause`. Messages are sentence case with no trailing period and include the value at fault.

export class FlannelError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "FlannelError";
    this.code = code;
    this.hint = opts.hint;
  }
}

/** The message of any thrown value, without a stack trace. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Replaces secrets (passwords, tokens, private keys) in text that is about to be logged. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (s !== undefined && s.length > 0) out = out.split(s).join("<redacted>");
  }
  return out;
}
