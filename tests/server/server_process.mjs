// Starts `hymba serve` on a free port and stops it: shared by the tests and
// the load test. HYMBA_BIN names the binary (default: build/hymba).
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const shippedModel = path.join(root, "models", "hymba-kjv-tiny");

export async function startServer(args = [], { quiet = true } = {}) {
  const binary = process.env.HYMBA_BIN || path.join(root, "build", "hymba");
  const child = spawn(binary, ["serve", "--port", "0", ...args], { stdio: ["ignore", "inherit", "pipe"] });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("hymba serve did not start in 60 s:\n" + log)), 60000);
    child.on("exit", (code) => reject(new Error(`hymba serve exited with ${code}:\n${log}`)));
    child.stderr.on("data", (data) => {
      log += data;
      if (!quiet) process.stderr.write(data);
      const ready = /listening on (http:\/\/[^,\s]+)[\s\S]*ready:/.exec(log);
      if (ready) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
    });
  });
  child.stderr.on("data", (data) => { if (!quiet) process.stderr.write(data); });
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
      child.kill("SIGTERM");
      return exited;
    },
  };
}
