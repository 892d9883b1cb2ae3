import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isAlive, processStartTime, startDetached, stopProcess, tailFile } from "./processes.ts";

describe("lab processes", () => {
  it("starts a detached process with a log, and stops it by PID + start time", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-lab-proc-"));
    try {
      const log = join(dir, "x.log");
      const rec = startDetached(["/bin/sh", "-c", "echo started; exec sleep 600"], {
        role: "x",
        logFile: log,
      });
      try {
        assert.equal(rec.startTime, processStartTime(rec.pid));
        // The shell writes to the log before it execs sleep; wait for that (generous deadline, no timing).
        const deadline = Date.now() + 20_000;
        while (tailFile(log) !== "started" && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        assert.ok(isAlive(rec));
        // A record with the same PID but another start time is someone else: never signalled.
        const stale = { ...rec, startTime: String(Number(rec.startTime) - 1) };
        assert.equal(isAlive(stale), false);
        assert.equal(await stopProcess(stale), "absent");
        assert.ok(isAlive(rec));
        assert.equal(await stopProcess(rec), "stopped");
        assert.equal(isAlive(rec), false);
        assert.equal(await stopProcess(rec), "absent");
        assert.equal(tailFile(log), "started");
      } finally {
        if (isAlive(rec)) process.kill(rec.pid, "SIGKILL");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("tails the last lines of a log, and gives '' for a missing one", () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-lab-proc-"));
    try {
      const f = join(dir, "l");
      writeFileSync(f, "a\nb\nc\n");
      assert.equal(tailFile(f, 2), "b\nc");
      assert.equal(tailFile(join(dir, "none")), "");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
