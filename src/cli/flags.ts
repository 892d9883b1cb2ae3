// A small re-implementation of Go's `flag` package, because flanneld must accept exactly what upstream
// accepts (it is a drop-in replacement) and print exactly what upstream prints.
//
// Design notes:
// - Syntax (Go flag.FlagSet.parseOne): `-f`, `--f`, `-f=v`, `--f=v`, `-f v`, `--f v`. A boolean flag only
//   takes a value after `=` (`--ip-masq false` sets ip-masq to true and stops parsing at `false`).
//   `--` ends the flags; parsing stops at the first argument that is not a flag (`-` alone is one).
// - Errors carry Go's exact text (`flag provided but not defined: -x`, `invalid value "abc" for flag
//   -healthz-port: parse error`, `flag needs an argument: -iface`, `bad flag syntax: ---x`), so logs and
//   scripts written against upstream keep matching. `-h`/`-help` (when not defined) is reported as a help
//   request, not an error.
// - Every flag keeps its Go `DefValue` text and the text of its type's zero value: `printDefaults()` omits
//   `(default …)` exactly when Go's isZeroValue would (e.g. klog's `-log_backtrace_at` default `:0`).
// - Nothing here touches process.argv, stderr or exit: the caller decides what to print and when to exit.

/** Why parsing stopped: a help request (`-h`, `-help`) or a malformed command line. */
export class FlagParseError extends Error {
  readonly code = "FLAG_PARSE";
  constructor(
    message: string,
    readonly help: boolean,
  ) {
    super(message);
    this.name = "FlagParseError";
  }
}

/** How a flag's value is read from text and shown back (Go's flag.Value). */
export interface FlagValue<T> {
  /** Parses `text` given the current value (repeatable flags append); throws Error(message) when invalid. */
  parse(text: string, current: T): T;
  /** Go's Value.String(). */
  format(value: T): string;
  /** The type name shown by printDefaults (`string`, `int`, `value`; "" for booleans). */
  typeName: string;
  /** Go's IsBoolFlag: the flag needs no argument. */
  isBool: boolean;
  /** String() of a fresh zero value of the type, for isZeroValue. */
  zeroText: string;
  /** printDefaults quotes non-zero defaults with %q (string flags) rather than %v. */
  quoteDefault: boolean;
}

export interface Flag<T = unknown> {
  readonly name: string;
  readonly usage: string;
  /** Go's DefValue: the default as text. */
  readonly defValue: string;
  readonly kind: FlagValue<T>;
  value: T;
}

export class FlagSet {
  private readonly flags = new Map<string, Flag>();
  private readonly actual = new Set<string>();
  private rest: string[] = [];

  constructor(readonly name: string) {}

  /** Defines a flag with any value type (Go's FlagSet.Var). Throws when the name is taken. */
  define<T>(name: string, def: T, usage: string, kind: FlagValue<T>): Flag<T> {
    if (this.flags.has(name)) throw new Error(`${this.name} flag redefined: ${name}`);
    const flag: Flag<T> = { name, usage, defValue: kind.format(def), kind, value: def };
    this.flags.set(name, flag as Flag);
    return flag;
  }

  string(name: string, def: string, usage: string): Flag<string> {
    return this.define(name, def, usage, STRING);
  }

  bool(name: string, def: boolean, usage: string): Flag<boolean> {
    return this.define(name, def, usage, BOOL);
  }

  int(name: string, def: number, usage: string): Flag<number> {
    return this.define(name, def, usage, INT);
  }

  /** A repeatable string flag (upstream's flagSlice): every occurrence appends one entry. */
  strings(name: string, usage: string): Flag<string[]> {
    return this.define<string[]>(name, [], usage, STRING_LIST);
  }

  lookup(name: string): Flag | undefined {
    return this.flags.get(name);
  }

  /** All flags in lexical order of their names, as Go's VisitAll. */
  all(): Flag[] {
    return [...this.flags.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** True when the flag was set by parse() or set(). */
  isSet(name: string): boolean {
    return this.actual.has(name);
  }

  /** Names of the flags that were set, in lexical order (Go's Visit). */
  setNames(): string[] {
    return [...this.actual].sort();
  }

  /** The arguments left after the flags. */
  args(): string[] {
    return [...this.rest];
  }

  /**
   * Sets a flag by name, as Go's FlagSet.Set: returns the Value's own error message on failure
   * (the caller adds context), and marks the flag as set.
   */
  set(name: string, text: string): void {
    const flag = this.flags.get(name);
    if (flag === undefined) throw new Error(`no such flag -${name}`);
    flag.value = flag.kind.parse(text, flag.value);
    this.actual.add(name);
  }

  /** Parses command-line arguments (without the program name). Throws FlagParseError. */
  parse(argv: readonly string[]): void {
    let args = [...argv];
    while (args.length > 0) {
      const s = args[0] as string;
      if (s.length < 2 || s[0] !== "-") break;
      let minuses = 1;
      if (s[1] === "-") {
        minuses = 2;
        if (s.length === 2) {
          args = args.slice(1);
          break;
        }
      }
      let name = s.slice(minuses);
      if (name.length === 0 || name[0] === "-" || name[0] === "=") {
        throw new FlagParseError(`bad flag syntax: ${s}`, false);
      }
      args = args.slice(1);
      let value: string | undefined;
      const eq = name.indexOf("=", 1);
      if (eq !== -1) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      const flag = this.flags.get(name);
      if (flag === undefined) {
        if (name === "help" || name === "h") throw new FlagParseError("flag: help requested", true);
        throw new FlagParseError(`flag provided but not defined: -${name}`, false);
      }
      if (flag.kind.isBool) {
        const text = value ?? "true";
        try {
          flag.value = flag.kind.parse(text, flag.value);
        } catch (err) {
          throw new FlagParseError(
            value === undefined
              ? `invalid boolean flag ${name}: ${messageOf(err)}`
              : `invalid boolean value ${goQuote(text)} for -${name}: ${messageOf(err)}`,
            false,
          );
        }
      } else {
        if (value === undefined && args.length > 0) {
          value = args[0] as string;
          args = args.slice(1);
        }
        if (value === undefined) throw new FlagParseError(`flag needs an argument: -${name}`, false);
        try {
          flag.value = flag.kind.parse(value, flag.value);
        } catch (err) {
          throw new FlagParseError(
            `invalid value ${goQuote(value)} for flag -${name}: ${messageOf(err)}`,
            false,
          );
        }
      }
      this.actual.add(name);
    }
    this.rest = args;
  }

  /** Go's PrintDefaults text: every flag in lexical order, with type, usage and non-zero default. */
  printDefaults(): string {
    let out = "";
    for (const f of this.all()) {
      const { typeName, usage } = unquoteUsage(f);
      let line = `  -${f.name}`;
      if (typeName.length > 0) line += ` ${typeName}`;
      // A one-letter boolean fits on the same line as its usage, as Go does.
      line += line.length <= 4 ? "\t" : "\n    \t";
      line += usage.split("\n").join("\n    \t");
      if (f.defValue !== f.kind.zeroText) {
        line += f.kind.quoteDefault ? ` (default ${goQuote(f.defValue)})` : ` (default ${f.defValue})`;
      }
      out += `${line}\n`;
    }
    return out;
  }
}

/** Go's flag.UnquoteUsage: a `back-quoted` word in the usage names the argument. */
function unquoteUsage(f: Flag): { typeName: string; usage: string } {
  const open = f.usage.indexOf("`");
  if (open !== -1) {
    const close = f.usage.indexOf("`", open + 1);
    if (close !== -1) {
      return {
        typeName: f.usage.slice(open + 1, close),
        usage: f.usage.slice(0, open) + f.usage.slice(open + 1, close) + f.usage.slice(close + 1),
      };
    }
  }
  return { typeName: f.kind.typeName, usage: f.usage };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Go's %q for the strings flags see (printable ASCII and common escapes). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** strconv.ParseBool. */
export function parseGoBool(text: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return false;
  throw new Error("parse error");
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/**
 * strconv.ParseInt(text, 0, 64) as Go's flag package reports it: base prefixes 0x/0o/0b and a leading 0
 * (octal), an optional sign, `_` between digits only with a base prefix; errors are `parse error` and
 * `value out of range`.
 */
export function parseGoInt(text: string): number {
  let s = text;
  let neg = false;
  if (s[0] === "+" || s[0] === "-") {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  let base = 10;
  let digits = s;
  let prefixed = false;
  if (/^0[xX]/.test(s)) [base, digits, prefixed] = [16, s.slice(2), true];
  else if (/^0[oO]/.test(s)) [base, digits, prefixed] = [8, s.slice(2), true];
  else if (/^0[bB]/.test(s)) [base, digits, prefixed] = [2, s.slice(2), true];
  else if (s.length > 1 && s[0] === "0") [base, digits, prefixed] = [8, s.slice(1), true];
  if (digits.includes("_")) {
    if (!underscoreOk(s, base === 16 && prefixed)) throw new Error("parse error");
    digits = digits.split("_").join("");
  }
  const alphabet = "0123456789abcdef".slice(0, base);
  if (digits.length === 0 || ![...digits.toLowerCase()].every((c) => alphabet.includes(c))) {
    throw new Error("parse error");
  }
  let v = 0n;
  for (const c of digits.toLowerCase()) v = v * BigInt(base) + BigInt(alphabet.indexOf(c));
  if (neg) v = -v;
  if (v < INT64_MIN || v > INT64_MAX) throw new Error("value out of range");
  return Number(v);
}

/** Go's strconv.underscoreOK: every `_` sits between digits (a base prefix counts as a digit). */
function underscoreOk(unsigned: string, hex: boolean): boolean {
  let saw = "^";
  let i = 0;
  if (/^0[bBoOxX]/.test(unsigned)) {
    i = 2;
    saw = "0";
  }
  for (; i < unsigned.length; i++) {
    const c = (unsigned[i] as string).toLowerCase();
    if ((c >= "0" && c <= "9") || (hex && c >= "a" && c <= "f")) saw = "0";
    else if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
    } else {
      if (saw === "_") return false;
      saw = "!";
    }
  }
  return saw !== "_";
}

export const STRING: FlagValue<string> = {
  parse: (text) => text,
  format: (v) => v,
  typeName: "string",
  isBool: false,
  zeroText: "",
  quoteDefault: true,
};

export const BOOL: FlagValue<boolean> = {
  parse: (text) => parseGoBool(text),
  format: (v) => String(v),
  typeName: "",
  isBool: true,
  zeroText: "false",
  quoteDefault: false,
};

export const INT: FlagValue<number> = {
  parse: (text) => parseGoInt(text),
  format: (v) => String(v),
  typeName: "int",
  isBool: false,
  zeroText: "0",
  quoteDefault: false,
};

/** Upstream's flagSlice: Set appends, String() is Go's %v of a []string (`[a b]`). */
export const STRING_LIST: FlagValue<string[]> = {
  parse: (text, current) => [...current, text],
  format: (v) => `[${v.join(" ")}]`,
  typeName: "value",
  isBool: false,
  zeroText: "[]",
  quoteDefault: false,
};
