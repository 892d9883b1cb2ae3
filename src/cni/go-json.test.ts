import assert from "node:assert/strict";
import { test } from "node:test";
import { GoStruct, goMarshal, structFields } from "./go-json.ts";

test("goMarshal sorts map keys byte-wise, keeps struct order, compact", () => {
  assert.equal(
    goMarshal({ b: 1, a: [true, null, "x"], c: { z: 1, y: 2 } }),
    '{"a":[true,null,"x"],"b":1,"c":{"y":2,"z":1}}',
  );
  assert.equal(
    goMarshal(
      new GoStruct([
        ["z", 1],
        ["a", 2],
      ]),
    ),
    '{"z":1,"a":2}',
  );
  // UTF-8 order: U+FF5E sorts before U+1F600 in UTF-8 but after it in UTF-16
  assert.equal(goMarshal({ "\u{1F600}": 1, "\uFF5E": 2 }), '{"\uFF5E":2,"\u{1F600}":1}');
});

test("goMarshal escapes like Go: HTML characters, line separators, control characters", () => {
  assert.equal(
    goMarshal("<&>\u2028\u2029\n\t\u0001\b\f"),
    '"\\u003c\\u0026\\u003e\\u2028\\u2029\\n\\t\\u0001\\b\\f"',
  );
  assert.equal(goMarshal(JSON.parse('"\\ud800x"')), '"\uFFFDx"');
});

test("goMarshal numbers as Go prints float64", () => {
  assert.equal(goMarshal([1472, 1.5, 1e21, 1e-7, 0.000001, -0]), "[1472,1.5,1e+21,1e-7,0.000001,-0]");
  assert.throws(() => goMarshal(NaN), /unsupported value/);
});

test("structFields: case-insensitive, last key wins", () => {
  assert.deepEqual(structFields({ DataDir: "a", datadir: "b", other: 1 }, ["dataDir"]), { dataDir: "b" });
});
