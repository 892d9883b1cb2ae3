// JSON the way Go's encoding/json reads and writes it, for the few places where the CNI plugin must match
// upstream byte for byte or field for field.
//
// Design notes:
// - Writing: upstream marshals the delegate conf as a Go map, so every object comes out compact with its
//   keys sorted byte-wise (UTF-8 order, which is not JS's UTF-16 order for astral characters), `<`, `>`, `&`
//   and U+2028/U+2029 escaped. Go structs are the exception: they keep their declaration order, so values
//   that upstream holds as structs (CNI routes) are wrapped in `GoStruct` to keep theirs.
// - Reading: Go matches JSON keys to struct fields case-insensitively and the last matching key wins; keys
//   of Go maps stay case-sensitive. `structFields` reproduces the first rule; callers pick which applies.
// - Numbers: Go decodes into float64 and prints the shortest round-trip form with the same exponent
//   thresholds (1e-6, 1e21) as JavaScript, so Number#toString matches except for negative zero.

/** A value that Go holds as a struct: its fields are written in this order, never sorted. */
export class GoStruct {
  constructor(readonly fields: ReadonlyArray<readonly [string, unknown]>) {}
}

/** Go `json.Marshal`: compact, map keys sorted, HTML characters escaped. */
export function goMarshal(value: unknown): string {
  const parts: string[] = [];
  write(value, parts);
  return parts.join("");
}

function write(value: unknown, out: string[]): void {
  if (value === null || value === undefined) {
    out.push("null");
  } else if (typeof value === "string") {
    out.push(goQuote(value));
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`json: unsupported value: ${value}`);
    out.push(Object.is(value, -0) ? "-0" : String(value));
  } else if (typeof value === "boolean") {
    out.push(value ? "true" : "false");
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((v, i) => {
      if (i > 0) out.push(",");
      write(v, out);
    });
    out.push("]");
  } else if (value instanceof GoStruct) {
    writeEntries(value.fields, out);
  } else if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    writeEntries(entries, out);
  } else {
    throw new Error(`json: unsupported type: ${typeof value}`);
  }
}

function writeEntries(entries: ReadonlyArray<readonly [string, unknown]>, out: string[]): void {
  out.push("{");
  entries.forEach(([k, v], i) => {
    if (i > 0) out.push(",");
    out.push(goQuote(k), ":");
    write(v, out);
  });
  out.push("}");
}

const HTML_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/** A Go-encoded JSON string literal. */
export function goQuote(s: string): string {
  // JSON.stringify already escapes control characters as Go 1.22+ does (\b \f \n \r \t, else \u00xx).
  // A lone surrogate can only come from a "\udXXX" escape in the input, which Go decodes to U+FFFD.
  return JSON.stringify(s)
    .replace(/[<>&\u2028\u2029]/g, (c) => HTML_ESCAPES[c] ?? c)
    .replace(/\\ud[89a-f][0-9a-f]{2}/g, "\uFFFD");
}

/**
 * Parses JSON; a syntax error says where (line, column, character offset) and what was found, e.g.
 * `invalid JSON at line 3, column 14: Unexpected token '}'`.
 */
export function parseJsonLocated(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const m = /at position (\d+)/.exec(msg);
    const pos = m?.[1] !== undefined ? Number(m[1]) : text.length;
    const before = text.slice(0, pos);
    const line = before.split("\n").length;
    const column = pos - (before.lastIndexOf("\n") + 1) + 1;
    const cleaned = msg
      .replace(/\s*(in JSON )?at position \d+.*$/s, "")
      .replace(/ \(line \d+ column \d+\)$/, "");
    if (text.trim() === "") throw new Error("invalid JSON: the input is empty");
    throw new Error(`invalid JSON at line ${line}, column ${column} (offset ${pos}): ${cleaned}`);
  }
}

/** The JSON type name of a parsed value, for error messages ("number 5", "array"). */
export function describeJson(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  return `the ${typeof v} ${String(v)}`;
}

export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The values of a JSON object for the fields of a Go struct: keys match field names case-insensitively
 * and, as in Go, the last matching key in the document wins. Unknown keys are ignored.
 */
export function structFields<F extends string>(
  obj: Record<string, unknown>,
  fields: readonly F[],
): Partial<Record<F, unknown>> {
  const byFold = new Map(fields.map((f) => [f.toLowerCase(), f]));
  const out: Partial<Record<F, unknown>> = {};
  for (const [k, v] of Object.entries(obj)) {
    const f = byFold.get(k.toLowerCase());
    if (f !== undefined) out[f] = v;
  }
  return out;
}
