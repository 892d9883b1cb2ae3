// Sysctl over /proc/sys files: "net/ipv4/ip_forward" is /proc/sys/net/ipv4/ip_forward. Acts on the network
// namespace of the current process, like every kernel port.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { KernelError, type Sysctl } from "./ports.ts";

export class ProcSysctl implements Sysctl {
  constructor(private readonly root = "/proc/sys") {}

  private file(path: string): string {
    // Interface names may contain dots ("flannel.1"), so the slash form is the only unambiguous one.
    if (path.split("/").some((p) => p === "" || p === "..")) {
      throw new KernelError(
        "EINVAL",
        `sysctl path ${JSON.stringify(path)} (use the slash form, e.g. net/ipv4/ip_forward)`,
      );
    }
    return join(this.root, path);
  }

  get(path: string): string | undefined {
    try {
      return readFileSync(this.file(path), "utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new KernelError((err as NodeJS.ErrnoException).code ?? "EUNKNOWN", `read /proc/sys/${path}`);
    }
  }

  set(path: string, value: string): void {
    try {
      writeFileSync(this.file(path), value.trim() + "\n");
    } catch (err) {
      throw new KernelError(
        (err as NodeJS.ErrnoException).code ?? "EUNKNOWN",
        `write ${value} to /proc/sys/${path}`,
      );
    }
  }
}
