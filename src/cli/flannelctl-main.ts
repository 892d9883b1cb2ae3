// flannelctl's entry point: a thin dispatcher. It owns the process (argv, signals, exit code) and hands each
// subcommand its arguments and an IO object; the subcommands live in src/ctl/. To add one, add a row to
// COMMANDS.

import { cleanupCommand } from "../ctl/cleanup/cleanup.ts";
import { doctorCommand } from "../ctl/doctor/doctor.ts";
import { sandboxCommand, type CommandIo } from "../ctl/sandbox.ts";
import { traceCommand } from "../ctl/trace/trace.ts";

interface Command {
  summary: string;
  run(args: readonly string[], io: CommandIo): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  sandbox: {
    summary: "build a multi-node flannel cluster from network namespaces, check it, tear it down",
    run: sandboxCommand,
  },
  doctor: {
    summary: "check this node (and the cluster's leases) for common flannel failures, with fixes",
    run: (args, io) => doctorCommand(args, io, process.env),
  },
  trace: {
    summary: "show the path a packet from a local pod takes, hop by hop, from the live state",
    run: (args, io) => traceCommand(args, io, process.env),
  },
  cleanup: {
    summary: "remove flannel's devices, rules, routes and files from this node (--dry-run to list)",
    run: cleanupCommand,
  },
};

function usage(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length)) + 2;
  const rows = names.map((n) => `  ${n.padEnd(w)}${COMMANDS[n]?.summary ?? ""}`).join("\n");
  return `Usage: flannelctl <command> [options]

Commands:
${rows}

Run \`flannelctl <command> --help\` for a command's options.
`;
}

const io: CommandIo = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  onInterrupt(handler) {
    let count = 0;
    const onSignal = (): void => {
      count += 1;
      // A second Ctrl-C while cleaning up means "stop now"; the state file still allows `sandbox down`.
      if (count > 1) process.exit(130);
      handler();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    return () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  },
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "-h" || name === "--help" || name === "-help") {
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`Unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  return cmd.run(rest, io);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`flannelctl: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
