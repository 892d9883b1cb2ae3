import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FlagParseError, FlagSet, goQuote, parseGoBool, parseGoInt } from "./flags.ts";

function sample(): FlagSet {
  const fs = new FlagSet("test");
  fs.string("iface-can-reach", "", "reach");
  fs.string("prefix", "/coreos.com/network", "etcd prefix");
  fs.bool("ip-masq", false, "masq");
  fs.bool("fwd", true, "forward");
  fs.int("healthz-port", 0, "port");
  fs.strings("iface", "iface to use");
  return fs;
}

function parseError(argv: string[]): FlagParseError {
  const fs = sample();
  try {
    fs.parse(argv);
  } catch (err) {
    assert.ok(err instanceof FlagParseError);
    return err;
  }
  assert.fail(`parse(${argv.join(" ")}) did not fail`);
}

describe("FlagSet.parse", () => {
  it("accepts every Go spelling of a valued flag", () => {
    for (const argv of [
      ["-healthz-port=8081"],
      ["--healthz-port=8081"],
      ["-healthz-port", "8081"],
      ["--healthz-port", "8081"],
    ]) {
      const fs = sample();
      fs.parse(argv);
      assert.equal(fs.lookup("healthz-port")?.value, 8081, argv.join(" "));
      assert.ok(fs.isSet("healthz-port"));
    }
  });

  it("keeps defaults and reports nothing set when no flags are given", () => {
    const fs = sample();
    fs.parse([]);
    assert.equal(fs.lookup("prefix")?.value, "/coreos.com/network");
    assert.equal(fs.lookup("fwd")?.value, true);
    assert.deepEqual(fs.lookup("iface")?.value, []);
    assert.deepEqual(fs.setNames(), []);
  });

  it("takes a boolean's value only after =", () => {
    const fs = sample();
    fs.parse(["--fwd=false", "--ip-masq", "false", "--healthz-port=1"]);
    assert.equal(fs.lookup("fwd")?.value, false);
    assert.equal(fs.lookup("ip-masq")?.value, true);
    // "false" is not a flag, so parsing stopped there.
    assert.equal(fs.lookup("healthz-port")?.value, 0);
    assert.deepEqual(fs.args(), ["false", "--healthz-port=1"]);
  });

  it("accepts strconv.ParseBool spellings", () => {
    for (const [text, want] of [
      ["1", true],
      ["t", true],
      ["TRUE", true],
      ["True", true],
      ["0", false],
      ["F", false],
      ["False", false],
    ] as const) {
      const fs = sample();
      fs.parse([`-ip-masq=${text}`]);
      assert.equal(fs.lookup("ip-masq")?.value, want, text);
    }
  });

  it("appends each occurrence of a repeatable flag, in order", () => {
    const fs = sample();
    fs.parse(["--iface", "eth0", "-iface=10.0.0.1", "--iface=a,b"]);
    assert.deepEqual(fs.lookup("iface")?.value, ["eth0", "10.0.0.1", "a,b"]);
  });

  it("keeps an = inside the value and allows an empty value", () => {
    const fs = sample();
    fs.parse(["--prefix=a=b", "--iface-can-reach="]);
    assert.equal(fs.lookup("prefix")?.value, "a=b");
    assert.equal(fs.lookup("iface-can-reach")?.value, "");
    assert.ok(fs.isSet("iface-can-reach"));
  });

  it("stops at -- and at the first non-flag argument", () => {
    let fs = sample();
    fs.parse(["--ip-masq", "--", "--healthz-port=3"]);
    assert.deepEqual(fs.args(), ["--healthz-port=3"]);
    assert.equal(fs.lookup("healthz-port")?.value, 0);
    fs = sample();
    fs.parse(["pos", "--ip-masq"]);
    assert.deepEqual(fs.args(), ["pos", "--ip-masq"]);
    assert.equal(fs.lookup("ip-masq")?.value, false);
    fs = sample();
    fs.parse(["-", "--ip-masq"]);
    assert.deepEqual(fs.args(), ["-", "--ip-masq"]);
  });

  it("lets the last occurrence of a scalar flag win", () => {
    const fs = sample();
    fs.parse(["--prefix=/a", "--prefix", "/b"]);
    assert.equal(fs.lookup("prefix")?.value, "/b");
  });

  it("reports errors with Go's exact text", () => {
    const cases: [string[], string][] = [
      [["-x"], "flag provided but not defined: -x"],
      [["--use-multi-cluster-cidr"], "flag provided but not defined: -use-multi-cluster-cidr"],
      [["--healthz-port=abc"], 'invalid value "abc" for flag -healthz-port: parse error'],
      [
        ["--healthz-port", "99999999999999999999"],
        'invalid value "99999999999999999999" for flag -healthz-port: value out of range',
      ],
      [["--iface"], "flag needs an argument: -iface"],
      [["--ip-masq=yes"], 'invalid boolean value "yes" for -ip-masq: parse error'],
      [["---x"], "bad flag syntax: ---x"],
      [["-=x"], "bad flag syntax: -=x"],
    ];
    for (const [argv, message] of cases) {
      const err = parseError(argv);
      assert.equal(err.message, message);
      assert.equal(err.help, false);
    }
  });

  it("treats -h and -help as a help request unless defined", () => {
    for (const argv of [["-h"], ["--help"], ["-help=true"]]) assert.equal(parseError(argv).help, true);
    const fs = new FlagSet("t");
    fs.bool("h", false, "h");
    fs.parse(["-h"]);
    assert.equal(fs.lookup("h")?.value, true);
  });

  it("set() changes a value, marks it set, and surfaces the value's error", () => {
    const fs = sample();
    fs.set("iface", "eth1");
    assert.deepEqual(fs.lookup("iface")?.value, ["eth1"]);
    assert.deepEqual(fs.setNames(), ["iface"]);
    assert.throws(() => fs.set("healthz-port", "x"), { message: "parse error" });
    assert.equal(fs.isSet("healthz-port"), false);
  });

  it("refuses to define a flag twice", () => {
    const fs = sample();
    assert.throws(() => fs.bool("ip-masq", true, "again"), /flag redefined: ip-masq/);
  });
});

describe("parseGoInt", () => {
  it("parses like strconv.ParseInt(s, 0, 64)", () => {
    const ok: [string, number][] = [
      ["0", 0],
      ["42", 42],
      ["+7", 7],
      ["-7", -7],
      ["0x1F", 31],
      ["0o17", 15],
      ["017", 15],
      ["0b101", 5],
      ["1_000", 1000],
      ["0x_ff", 255],
      ["0_7", 7],
    ];
    for (const [text, want] of ok) assert.equal(parseGoInt(text), want, text);
  });

  it("rejects what Go rejects", () => {
    for (const text of ["", "abc", "08", "0x", "1__0", "_1", "1_", "1.5", " 1", "1e3", "++1"]) {
      assert.throws(() => parseGoInt(text), { message: "parse error" }, text);
    }
    assert.throws(() => parseGoInt("9223372036854775808"), { message: "value out of range" });
    assert.equal(parseGoInt("-9223372036854775808"), -9223372036854775808);
  });
});

describe("helpers", () => {
  it("parseGoBool rejects other spellings", () => {
    for (const t of ["yes", "on", "tRUE", ""])
      assert.throws(() => parseGoBool(t), { message: "parse error" });
  });

  it("goQuote escapes like %q", () => {
    assert.equal(goQuote('a"b\\c\n'), '"a\\"b\\\\c\\n"');
  });
});

describe("FlagSet.printDefaults", () => {
  it("prints Go's layout: sorted, type names, non-zero defaults only", () => {
    const fs = new FlagSet("t");
    fs.string("name", "x", "the name");
    fs.string("empty", "", "no default shown");
    fs.bool("b", false, "one letter");
    fs.bool("on", true, "on by default");
    fs.int("n", 5, "a `count` of things");
    fs.strings("list", "repeatable");
    assert.equal(
      fs.printDefaults(),
      [
        "  -b\tone letter",
        "  -empty string",
        "    \tno default shown",
        "  -list value",
        "    \trepeatable",
        "  -n count",
        "    \ta count of things (default 5)",
        "  -name string",
        '    \tthe name (default "x")',
        "  -on",
        "    \ton by default (default true)",
        "",
      ].join("\n"),
    );
  });
});
