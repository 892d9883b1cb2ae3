// Node annotation names of the Kubernetes subnet manager (upstream pkg/subnet/kube/annotations.go).
//
// The prefix given with --kube-annotation-prefix is normalised before names are built:
//   * more than one "/"            → error
//   * no "/"                       → "/" is appended       (flannel.alpha.coreos.com → flannel.alpha.coreos.com/)
//   * not ending in "/" or "-"     → "-" is appended       (org.com/9 → org.com/9-)
//   * the result must look like "fqdn/[name-]" in lower case, else an error.
// Upstream's exact error texts are kept because operators search for them.

import { FlannelError } from "../../errors.ts";

export interface Annotations {
  subnetKubeManaged: string;
  backendData: string;
  backendV6Data: string;
  backendType: string;
  backendPublicIp: string;
  backendPublicIpv6: string;
  backendPublicIpOverwrite: string;
  backendPublicIpv6Overwrite: string;
  nodePublicIp: string;
  nodePublicIpv6: string;
}

const PREFIX_RE = /^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/;

/** Builds the annotation names for a prefix; throws upstream's messages for malformed prefixes. */
export function newAnnotations(prefix: string): Annotations {
  const slashes = prefix.split("/").length - 1;
  if (slashes > 1) {
    throw new FlannelError("ANNOTATION_PREFIX", "subnet/kube: prefix can contain at most single slash", {
      hint: `--kube-annotation-prefix is "${prefix}"; use a domain with at most one path part, e.g. flannel.alpha.coreos.com`,
    });
  }
  let p = prefix;
  if (slashes === 0) p += "/";
  if (!p.endsWith("/") && !p.endsWith("-")) p += "-";
  if (!PREFIX_RE.test(p)) {
    throw new FlannelError("ANNOTATION_PREFIX", "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*", {
      hint: `--kube-annotation-prefix is "${prefix}"; use a lower-case domain name, e.g. flannel.alpha.coreos.com`,
    });
  }
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendType: `${p}backend-type`,
    backendPublicIp: `${p}public-ip`,
    backendPublicIpv6: `${p}public-ipv6`,
    backendPublicIpOverwrite: `${p}public-ip-overwrite`,
    backendPublicIpv6Overwrite: `${p}public-ipv6-overwrite`,
    nodePublicIp: `${p}node-public-ip`,
    nodePublicIpv6: `${p}node-public-ipv6`,
  };
}

/**
 * Extracts the VtepMAC from a backend-data annotation. Upstream does this by string surgery (trim `"`/`}`,
 * split on `:"`); we parse the JSON, which yields the same value for every well-formed annotation and
 * nothing (instead of garbage) for a malformed one. Upstream also builds the key from the raw prefix
 * (spec Appendix A17); callers here use the normalised `backendData` name, so prefixes with a path part work.
 */
export function macFromBackendData(value: string | undefined): string | undefined {
  if (value === undefined || value === "" || value === "null") return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed !== null && typeof parsed === "object") {
      for (const [k, v] of Object.entries(parsed)) {
        if (k.toLowerCase() === "vtepmac" && typeof v === "string" && v !== "") return v;
      }
    }
  } catch {
    // Not JSON: no MAC to reuse; the backend then picks a fresh one.
  }
  return undefined;
}
