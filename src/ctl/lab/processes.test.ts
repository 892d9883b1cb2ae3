import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  isAlive,
  pauseProcess,
  processStartTime,
  processState,
  resumeProcess,
  startDetached,
  stopProcess,
  tailFile,
} from "./processes.ts";

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

  it("pauses and resumes a process, and stops a paused one with SIGTERM, not SIGKILL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-lab-proc-"));
    try {
      const log = join(dir, "x.log");
      // The shell says when SIGTERM reaches it; SIGKILL would leave no line.
      const script = 'trap "echo got TERM; exit 0" TERM; echo started; while :; do sleep 0.05; done';
      const rec = startDetached(["/bin/sh", "-c", script], { role: "x", logFile: log });
      try {
        const deadline = Date.now() + 20_000;
        while (tailFile(log) !== "started" && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        assert.equal(pauseProcess(rec), true);
        // SIGSTOP is delivered asynchronously: wait for the state to show it.
        while (processState(rec.pid) !== "T" && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
        assert.equal(processState(rec.pid), "T");
        resumeProcess(rec);
        while (processState(rec.pid) === "T" && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
        assert.notEqual(processState(rec.pid), "T");
        // Someone else's process (same PID, other start time) is never paused.
        assert.equal(pauseProcess({ ...rec, startTime: String(Number(rec.startTime) - 1) }), false);

        assert.equal(pauseProcess(rec), true);
        assert.equal(await stopProcess(rec, 60_000), "stopped");
        assert.equal(tailFile(log), "started\ngot TERM");
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
