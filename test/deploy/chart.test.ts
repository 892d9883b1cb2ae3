// The Helm chart, checked without helm (no helm binary is installable on these machines): every `.Values` path a
// template uses exists in values.yaml, template actions are balanced, the chart carries the same objects as
// deploy/kube-flannel.yml, and the flanneld flags it passes exist.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { defineFlanneldFlags } from "../../src/cli/flanneld-options.ts";

const CHART = join(import.meta.dirname, "..", "..", "deploy", "chart", "kube-flannel");
const values = k8s.loadYaml(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<string, unknown>;
const templates = readdirSync(join(CHART, "templates"))
  .filter((f) => f.endsWith(".yaml"))
  .map((f) => ({ name: f, text: readFileSync(join(CHART, "templates", f), "utf8") }));

function resolve(path: string[]): boolean {
  let cur: unknown = values;
  for (const p of path) {
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, p)) return false;
    cur = (cur as Record<string, unknown>)[p];
  }
  return true;
}

test("every .Values path used by a template is defined in values.yaml", () => {
  const missing: string[] = [];
  for (const t of templates) {
    for (const m of t.text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      const path = (m[1] as string).slice(1).split(".");
      if (!resolve(path)) missing.push(`${t.name}: .Values.${path.join(".")}`);
    }
  }
  assert.deepEqual(missing, []);
});

test("template actions are balanced (every if/range/with/define has its end)", () => {
  for (const t of templates) {
    const actions = [...t.text.matchAll(/\{\{-?\s*(\w+)/g)].map((m) => m[1]);
    const opens = actions.filter((a) => a === "if" || a === "range" || a === "with" || a === "define").length;
    const ends = actions.filter((a) => a === "end").length;
    assert.equal(opens, ends, `${t.name}: ${opens} blocks opened, ${ends} closed`);
    assert.equal(
      (t.text.match(/\{\{/g) ?? []).length,
      (t.text.match(/\}\}/g) ?? []).length,
      `${t.name}: unbalanced {{ }}`,
    );
  }
});

test("the chart carries the manifest's objects and only flags flanneld has", () => {
  const kinds = templates.flatMap((t) => [...t.text.matchAll(/^kind: (\w+)/gm)].map((m) => m[1])).sort();
  assert.deepEqual(kinds, [
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
    "Namespace",
    "ServiceAccount",
  ]);
  const known = new Set(
    defineFlanneldFlags()
      .set.all()
      .map((f) => f.name),
  );
  const args = (values.flannel as { args: string[] }).args;
  const all = [
    ...args,
    ...templates.flatMap((t) => [...t.text.matchAll(/"?(--[a-z-]+)[=" ]/g)].map((m) => m[1])),
  ];
  for (const a of all) {
    const name = (a as string).replace(/^--/, "").split("=")[0] as string;
    assert.ok(known.has(name), `flanneld has no flag --${name}`);
  }
});
