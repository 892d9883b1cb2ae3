// A JSON reader that keeps what Go's encoding/json decoder needs and JSON.parse throws away.
//
// Design notes:
// - Upstream decodes net-conf.json with encoding/json into typed structs. Reproducing its results needs
//   (a) every object member in document order, duplicates included (a later duplicate wins, and keys that
//   differ only in case are duplicates of the same field), (b) the raw text of each value (flannel's IP
//   types implement UnmarshalJSON over the raw bytes, so `"Network": 10` fails as `invalid CIDR address: 10`)
//   and (c) Go's syntax error texts. JSON.parse gives none of these, so this is a small recursive-descent
//   reader producing a tree of `GoJsonNode`s.
// - The whole text is checked before any value is decoded, as Go does: a syntax error anywhere wins over a
//   type error earlier in the document.
// - Error messages are Go's (`invalid character '}' looking for beginning of object key string`,
//   `unexpected end of JSON input`) followed by the line and column, which Go omits and users need.
// - Nesting is limited (Go: 10000); we stop at 1000 to stay well inside Node's call stack. A net-conf.json
//   nests three levels deep.

export type GoJsonNode =
  | { kind: "object"; entries: [string, GoJsonNode][]; raw: string }
  | { kind: "array"; items: GoJsonNode[]; raw: string }
  | { kind: "string"; value: string; raw: string }
  | { kind: "number"; value: number; raw: string }
  | { kind: "bool"; value: boolean; raw: string }
  | { kind: "null"; raw: string };

const MAX_DEPTH = 1000;

/** Parses JSON text into nodes; throws an Error with Go's syntax message plus `(line L, column C)`. */
export function parseGoJson(text: string): GoJsonNode {
  const p = new Parser(text);
  p.skipSpace();
  const node = p.value(0);
  p.skipSpace();
  if (p.pos < text.length) p.fail("after top-level value");
  return node;
}

/** The JSON type name Go uses in UnmarshalTypeError (`string`, `number`, `bool`, `array`, `object`). */
export function goJsonTypeName(node: GoJsonNode): string {
  return node.kind === "null" ? "null" : node.kind;
}

/**
 * Converts a node to a plain value. Objects keep one property per key; a repeated key takes the last value
 * and is moved to the position of its last occurrence, so a case-insensitive "last match wins" scan over
 * the properties gives Go's result. Keys are defined, not assigned, so `__proto__` is an ordinary key.
 */
export function goJsonToValue(node: GoJsonNode): unknown {
  switch (node.kind) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, v] of node.entries) {
        if (Object.prototype.hasOwnProperty.call(out, k)) delete out[k];
        Object.defineProperty(out, k, {
          value: goJsonToValue(v),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    case "array":
      return node.items.map(goJsonToValue);
    case "null":
      return null;
    default:
      return node.value;
  }
}

/** Go's quoteChar: the offending character as it appears in encoding/json messages. */
function quoteChar(c: string): string {
  if (c === "'") return `'\\''`;
  if (c === '"') return `'"'`;
  const code = c.codePointAt(0) ?? 0;
  const escapes: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };
  const esc = escapes[c];
  if (esc !== undefined) return `'${esc}'`;
  if (code < 0x20 || code === 0x7f) return `'\\x${code.toString(16).padStart(2, "0")}'`;
  if (code === 0xfeff) return `'\\ufeff'`;
  return `'${c}'`;
}

class Parser {
  pos = 0;
  constructor(private readonly text: string) {}

  private where(at: number): string {
    let line = 1;
    let col = 1;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text[i] === "\n") {
        line++;
        col = 1;
      } else col++;
    }
    return `(line ${line}, column ${col})`;
  }

  /** Throws Go's `invalid character 'x' <context>` at the current position (or end of input). */
  fail(context: string): never {
    if (this.pos >= this.text.length) {
      throw new Error(`unexpected end of JSON input ${this.where(this.pos)}`);
    }
    const c = String.fromCodePoint(this.text.codePointAt(this.pos) ?? 0);
    throw new Error(`invalid character ${quoteChar(c)} ${context} ${this.where(this.pos)}`);
  }

  skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t[this.pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.pos++;
      else break;
    }
  }

  value(depth: number): GoJsonNode {
    if (depth > MAX_DEPTH) throw new Error(`exceeded max depth ${this.where(this.pos)}`);
    const start = this.pos;
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.object(depth, start);
      case "[":
        return this.array(depth, start);
      case '"': {
        const value = this.string();
        return { kind: "string", value, raw: this.text.slice(start, this.pos) };
      }
      case "t":
        this.literal("true");
        return { kind: "bool", value: true, raw: "true" };
      case "f":
        this.literal("false");
        return { kind: "bool", value: false, raw: "false" };
      case "n":
        this.literal("null");
        return { kind: "null", raw: "null" };
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number(start);
        return this.fail("looking for beginning of value");
    }
  }

  private literal(word: string): void {
    for (let i = 0; i < word.length; i++) {
      if (this.text[this.pos] !== word[i]) {
        this.fail(`in literal ${word} (expecting '${word[i] ?? ""}')`);
      }
      this.pos++;
    }
  }

  private number(start: number): GoJsonNode {
    const t = this.text;
    const digit = (): boolean => {
      const d = t[this.pos];
      return d !== undefined && d >= "0" && d <= "9";
    };
    if (t[this.pos] === "-") {
      this.pos++;
      if (!digit()) this.fail("in numeric literal");
    }
    if (t[this.pos] === "0") this.pos++;
    else while (digit()) this.pos++;
    if (t[this.pos] === ".") {
      this.pos++;
      if (!digit()) this.fail("after decimal point in numeric literal");
      while (digit()) this.pos++;
    }
    if (t[this.pos] === "e" || t[this.pos] === "E") {
      this.pos++;
      if (t[this.pos] === "+" || t[this.pos] === "-") this.pos++;
      if (!digit()) this.fail("in exponent of numeric literal");
      while (digit()) this.pos++;
    }
    const raw = t.slice(start, this.pos);
    return { kind: "number", value: Number(raw), raw };
  }

  private string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    for (;;) {
      if (this.pos >= t.length) this.fail("");
      const c = t[this.pos] as string;
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c < " ") this.fail("in string literal");
      if (c !== "\\") {
        out += c;
        this.pos++;
        continue;
      }
      this.pos++;
      const e = t[this.pos];
      const simple: Record<string, string> = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
      };
      if (e !== undefined && simple[e] !== undefined) {
        out += simple[e];
        this.pos++;
      } else if (e === "u") {
        this.pos++;
        let code = 0;
        for (let i = 0; i < 4; i++) {
          const h = t[this.pos];
          if (h === undefined || !/[0-9a-fA-F]/.test(h)) this.fail("in \\u hexadecimal character escape");
          code = code * 16 + parseInt(h, 16);
          this.pos++;
        }
        out += String.fromCharCode(code);
      } else {
        this.fail("in string escape code");
      }
    }
  }

  private object(depth: number, start: number): GoJsonNode {
    this.pos++; // {
    const entries: [string, GoJsonNode][] = [];
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return { kind: "object", entries, raw: this.text.slice(start, this.pos) };
    }
    for (;;) {
      if (this.text[this.pos] !== '"') this.fail("looking for beginning of object key string");
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos] !== ":") this.fail("after object key");
      this.pos++;
      this.skipSpace();
      entries.push([key, this.value(depth + 1)]);
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
        this.skipSpace();
        continue;
      }
      if (c === "}") {
        this.pos++;
        return { kind: "object", entries, raw: this.text.slice(start, this.pos) };
      }
      this.fail("after object key:value pair");
    }
  }

  private array(depth: number, start: number): GoJsonNode {
    this.pos++; // [
    const items: GoJsonNode[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return { kind: "array", items, raw: this.text.slice(start, this.pos) };
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
        this.skipSpace();
        continue;
      }
      if (c === "]") {
        this.pos++;
        return { kind: "array", items, raw: this.text.slice(start, this.pos) };
      }
      this.fail("after array element");
    }
  }
}
