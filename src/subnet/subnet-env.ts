// subnet.env (default /run/flannel/subnet.env): written once flanneld has its lease and rules, read by the
// CNI plugin, mk-docker-opts.sh and systemd units, and read back by flanneld at the next start to reuse its
// previous subnet and recycle masquerade rules (spec §5; upstream pkg/subnet/subnet.go, main.go).
//
// Design notes:
// - The bytes are upstream's exactly: LF endings, no quotes, IPv4 pair, IPv6 pair, MTU, IPMASQ, each
//   family's pair present only when that family is enabled, the subnet printed with its first host address
//   (10.5.72.0/24 → 10.5.72.1/24) because that is the bridge address pods use as their gateway.
// - The write is atomic (upstream ≥ v0.28.8, renameio): readers (the CNI plugin runs concurrently with a
//   restarting flanneld) see the old file or the new one, never a truncated one. Temp file in the same
//   directory (rename(2) does not cross filesystems), fsync before rename, mode 0644 whatever the umask, an
//   existing file's mode kept, the temp file removed on any failure.
// - The reader accepts what godotenv accepts in practice (`export`, quotes, comments, blank lines), since
//   operators and other tools write this file too. Unreadable files and unparsable values are logged with
//   upstream's texts and skipped: a bad previous subnet must never stop flanneld from starting.

import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { errorMessage } from "../errors.ts";
import { IpNet } from "../ip/net.ts";
import type { Logger } from "../log/logger.ts";

export interface SubnetEnvValues {
  /** The IPv4 cluster network; null when IPv4 is disabled. */
  network: IpNet | null;
  /** This node's IPv4 subnet (network address); null when IPv4 is disabled. */
  subnet: IpNet | null;
  ipv6Network: IpNet | null;
  ipv6Subnet: IpNet | null;
  /** The MTU pods should use (the backend's). */
  mtu: number;
  /** The --ip-masq flag value. */
  ipMasq: boolean;
}

function firstHost(subnet: IpNet): string {
  return `${subnet.ip.add(1).toString()}/${subnet.prefixLen}`;
}

/** The exact bytes upstream's WriteSubnetFile produces for these values. */
export function formatSubnetEnv(v: SubnetEnvValues): string {
  const pair = (label: string, netKey: string, net: IpNet | null, subnet: IpNet | null): string => {
    if (net === null && subnet === null) return "";
    if (net === null || subnet === null) {
      throw new Error(
        `Cannot write subnet.env: the ${label} network is ${String(net ?? "missing")} but the ${label} subnet is ` +
          `${String(subnet ?? "missing")}; both must be set when ${label} is enabled`,
      );
    }
    const subKey = netKey.replace("NETWORK", "SUBNET");
    return `${netKey}=${net.toString()}\n${subKey}=${firstHost(subnet)}\n`;
  };
  if (!Number.isInteger(v.mtu) || v.mtu < 0) {
    throw new Error(`Cannot write subnet.env: MTU ${v.mtu} is not a non-negative integer`);
  }
  return (
    pair("IPv4", "FLANNEL_NETWORK", v.network, v.subnet) +
    pair("IPv6", "FLANNEL_IPV6_NETWORK", v.ipv6Network, v.ipv6Subnet) +
    `FLANNEL_MTU=${v.mtu}\nFLANNEL_IPMASQ=${v.ipMasq ? "true" : "false"}\n`
  );
}

const DEFAULT_MODE = 0o644;

/**
 * Writes `content` to `path` atomically: creates the directory (0755) if needed, writes a temp file
 * `.<basename><random>` beside the target, fsyncs it, sets its mode (0644, or the existing file's mode)
 * and renames it over the target. On failure the temp file is removed and the target left untouched.
 *
 * The calls are synchronous: the file is tiny, and at start-up the iptables bootstrap runs in the background
 * (every process it starts holds the event loop for the fork), so ten asynchronous steps took ~24 ms on a
 * tmpfs instead of well under one. Async in signature so that callers need not care.
 */
export async function writeSubnetEnv(path: string, content: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  let mode = DEFAULT_MODE;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    // No existing file: use the default mode.
  }
  const tmp = join(dir, `.${basename(path)}${randomBytes(6).readUIntBE(0, 6)}`);
  let created = false;
  try {
    const fd = openSync(tmp, "wx", 0o600);
    created = true;
    try {
      writeFileSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // chmod after open: the mode given to open() is filtered by the umask, and upstream ignores the umask.
    chmodSync(tmp, mode);
    renameSync(tmp, path);
    created = false;
  } finally {
    if (created) rmSync(tmp, { force: true });
  }
  // Make the rename itself durable; failing to sync a directory (some filesystems refuse) is not an error.
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // best effort
  }
}

/**
 * Parses dotenv text as godotenv does for the forms that occur in practice: `KEY=value` or `KEY: value`,
 * optional `export `, `#` comment lines, blank lines, single quotes (literal), double quotes (with `\n`,
 * `\"`, `\\` escapes; may span lines), unquoted values trimmed and cut at ` #`. A later key wins.
 * Variable expansion (`$VAR`) is not performed. Throws on a line it cannot read.
 */
export function parseDotenv(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const src = text.replace(/\r\n?/g, "\n");
  let i = 0;
  const lineNo = (at: number): number => src.slice(0, at).split("\n").length;
  while (i < src.length) {
    // Skip blank space and comment lines.
    const ch = src[i] as string;
    if (ch === " " || ch === "\t" || ch === "\n") {
      i++;
      continue;
    }
    if (ch === "#") {
      const nl = src.indexOf("\n", i);
      i = nl === -1 ? src.length : nl + 1;
      continue;
    }
    const nlAt = src.indexOf("\n", i);
    const lineEnd = nlAt === -1 ? src.length : nlAt;
    const keyMatch = /^(?:export[ \t]+)?([A-Za-z0-9_.-]+)[ \t]*[=:]/.exec(src.slice(i, lineEnd));
    if (keyMatch === null) {
      const line = JSON.stringify(src.slice(i, lineEnd));
      throw new Error(`Unreadable line ${lineNo(i)}: ${line} is not KEY=value`);
    }
    const key = keyMatch[1] as string;
    i += keyMatch[0].length;
    while (src[i] === " " || src[i] === "\t") i++;
    const q = src[i];
    let value: string;
    if (q === "'" || q === '"') {
      let j = i + 1;
      let raw = "";
      for (;;) {
        if (j >= src.length) throw new Error(`Unterminated quoted value for ${key} on line ${lineNo(i)}`);
        const c = src[j] as string;
        if (c === q) break;
        if (q === '"' && c === "\\" && j + 1 < src.length) {
          raw += c + (src[j + 1] as string);
          j += 2;
          continue;
        }
        raw += c;
        j++;
      }
      value =
        q === "'" ? raw : raw.replace(/\\(.)/g, (_m, e: string) => ({ n: "\n", r: "\r", t: "\t" })[e] ?? e);
      i = j + 1;
      // Anything after the closing quote up to the end of line is ignored (a comment, usually).
      const nl = src.indexOf("\n", i);
      i = nl === -1 ? src.length : nl + 1;
    } else {
      const nl = src.indexOf("\n", i);
      let line = src.slice(i, nl === -1 ? src.length : nl);
      const comment = /[ \t]#/.exec(line);
      if (comment !== null) line = line.slice(0, comment.index);
      value = line.trim();
      i = nl === -1 ? src.length : nl + 1;
    }
    out.set(key, value);
  }
  return out;
}

/**
 * The CIDRs listed (comma-separated) under `key` in the subnet file, each masked as Go's net.ParseCIDR does.
 * A missing file gives []. An unreadable file, and each unparsable entry, is logged with upstream's text and
 * skipped.
 */
export function readCidrsFromSubnetFile(path: string, key: string, logger?: Logger): IpNet[] {
  let vals: Map<string, string>;
  try {
    vals = parseDotenv(readFileSync(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    logger?.error(`Couldn't fetch previous ${key} from subnet file at ${path}: ${errorMessage(err)}`);
    return [];
  }
  const value = vals.get(key);
  if (value === undefined) return [];
  const out: IpNet[] = [];
  for (const part of value.split(",")) {
    try {
      out.push(IpNet.parse(part.trim()));
    } catch (err) {
      logger?.error(`Couldn't parse previous ${key} from subnet file at ${path}: ${errorMessage(err)}`);
    }
  }
  return out;
}

/** The single CIDR under `key`, or null (logged) when there are none or more than one. */
export function readCidrFromSubnetFile(path: string, key: string, logger?: Logger): IpNet | null {
  const cidrs = readCidrsFromSubnetFile(path, key, logger);
  if (cidrs.length === 1) return cidrs[0] ?? null;
  if (cidrs.length === 0) logger?.warn(`no subnet found for key: ${key} in file: ${path}`);
  else logger?.error(`error reading subnet: more than 1 entry found for key: ${key} in file ${path}`);
  return null;
}
