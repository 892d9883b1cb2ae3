import { test } from "node:test";
import assert from "node:assert/strict";
import { goJsonToValue, parseGoJson } from "./go-json.ts";

test("parseGoJson keeps duplicates in order and the raw text of each value", () => {
  const root = parseGoJson(` { "a" : "x\\/y" , "A":[1, 2.5e1 ,true,null], "a": {"b":{}} } `);
  assert.equal(root.kind, "object");
  if (root.kind !== "object") return;
  assert.deepEqual(
    root.entries.map(([k, v]) => [k, v.kind, v.raw]),
    [
      ["a", "string", `"x\\/y"`],
      ["A", "array", `[1, 2.5e1 ,true,null]`],
      ["a", "object", `{"b":{}}`],
    ],
  );
  const first = root.entries[0]?.[1];
  assert.equal(first?.kind === "string" ? first.value : undefined, "x/y");
});

test("goJsonToValue agrees with JSON.parse on documents without duplicate keys", () => {
  const docs = [
    `{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan","VNI":1,"Port":0,"GBP":false,"x":[1,"a",null,{"y":-0.5e-3}]}}`,
    `[1,2,[3,[4,{}]],"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\"]`,
    `"str"`,
    `-12.5E+3`,
    `true`,
    `null`,
  ];
  for (const d of docs) assert.deepEqual(goJsonToValue(parseGoJson(d)), JSON.parse(d), d);
});

test("goJsonToValue moves a repeated key to its last position", () => {
  const v = goJsonToValue(parseGoJson(`{"a":1,"B":2,"a":3}`)) as Record<string, unknown>;
  assert.deepEqual(Object.entries(v), [
    ["B", 2],
    ["a", 3],
  ]);
});
