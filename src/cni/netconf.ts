// The flannel CNI plugin's own netconf (upstream cni-plugin `NetConf`, decoded with Go encoding/json):
// field names match case-insensitively, unknown keys are ignored, `null` leaves a field at its default,
// and a value of the wrong JSON type is an error that names the field.

import { describeJson, isJsonObject, parseJsonLocated, structFields } from "./go-json.ts";

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";

export interface FlannelNetConf {
  /** "" when absent (the CNI library then treats the config as 0.1.0). */
  cniVersion: string;
  name: string;
  type: string;
  subnetFile: string;
  dataDir: string;
  /** The `delegate` object, or null when absent or null. Keys are case-sensitive (a Go map). */
  delegate: Record<string, unknown> | null;
  ipam: Record<string, unknown> | null;
  runtimeConfig: Record<string, unknown> | null;
}

const STRING_FIELDS = ["cniVersion", "name", "type", "subnetFile", "dataDir"] as const;
const OBJECT_FIELDS = ["delegate", "ipam", "runtimeConfig", "capabilities", "dns", "prevResult"] as const;

/** Parses the netconf from stdin. Errors read `failed to load netconf: <what and where>`. */
export function parseNetConf(text: string): FlannelNetConf {
  try {
    return decode(parseJsonLocated(text));
  } catch (err) {
    throw new Error(`failed to load netconf: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decode(doc: unknown): FlannelNetConf {
  if (!isJsonObject(doc)) throw new Error(`the netconf must be a JSON object, not ${describeJson(doc)}`);
  const f = structFields(doc, [...STRING_FIELDS, ...OBJECT_FIELDS]);
  const str = (k: (typeof STRING_FIELDS)[number], dflt: string): string => {
    const v = f[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "string") throw new Error(`"${k}" must be a string, not ${describeJson(v)}`);
    return v;
  };
  const obj = (k: (typeof OBJECT_FIELDS)[number]): Record<string, unknown> | null => {
    const v = f[k];
    if (v === undefined || v === null) return null;
    if (!isJsonObject(v)) throw new Error(`"${k}" must be an object, not ${describeJson(v)}`);
    return v;
  };
  const capabilities = obj("capabilities");
  for (const [k, v] of Object.entries(capabilities ?? {})) {
    if (typeof v !== "boolean")
      throw new Error(`"capabilities.${k}" must be true or false, not ${describeJson(v)}`);
  }
  obj("dns");
  obj("prevResult");
  return {
    cniVersion: str("cniVersion", ""),
    name: str("name", ""),
    type: str("type", ""),
    subnetFile: str("subnetFile", DEFAULT_SUBNET_FILE),
    dataDir: str("dataDir", DEFAULT_DATA_DIR),
    delegate: obj("delegate"),
    ipam: obj("ipam"),
    runtimeConfig: obj("runtimeConfig"),
  };
}
