"""Drive HTTP load with ``wrk`` (a C load generator) and read back what it measured.

A Python client tops out near 550 req/s on this machine, below what gunicorn answers for a
trivial endpoint, so the old bench/http.py measured its own client. ``wrk`` does tens of
thousands of requests per second per thread; ``run_wrk`` also samples wrk's own CPU time from
``/proc/<pid>/stat`` so that a table can show the load generator was not the bottleneck.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers plus connect, read, write and timeout socket errors
    wrk_cpu: float  # wrk's CPU seconds / wall seconds: 1.0 is one core busy the whole run
    server_p50_ms: float | None = None  # median of the app's Server-Timing, when asked for


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def lua_script(path: Path, method: str, headers: dict[str, str], body: Path | None,
               server_timing: bool) -> Path:
    """Write a wrk script: the request, its body read from ``body``, and optionally the collection
    of each answer's ``Server-Timing`` (a Lua ``response`` hook slows wrk, so only when asked)."""
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    if body is not None:
        lines += [f'local f = assert(io.open("{body}", "rb"))', "wrk.body = f:read(\"*a\")", "f:close()"]
    if server_timing:
        lines.append("""
local threads = {}
function setup(thread) table.insert(threads, thread) end
server_ms = {}
function response(status, headers, body)
  local timing = headers["Server-Timing"] or headers["server-timing"]
  local dur = timing and timing:match("dur=([%d%.]+)")
  if dur then server_ms[#server_ms + 1] = tonumber(dur) end
end
function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("server_ms")) do all[#all + 1] = v end
  end
  table.sort(all)
  if #all > 0 then io.write(string.format("SERVER_P50_MS %.3f\\n", all[math.ceil(#all / 2)])) end
end""")
    path.write_text("\n".join(lines) + "\n")
    return path


def parse(output: str) -> tuple[int, float, float, float, int, float | None]:
    """(requests, req/s, p50 ms, p99 ms, errors, server p50 ms) from ``wrk --latency`` output."""
    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+{_TIME}", output, re.M)
        if match is None:
            raise ValueError(f"no {percent}% line in wrk's output:\n{output}")
        return float(match[1]) * _UNITS_MS[match[2]]

    requests = re.search(r"^\s+(\d+) requests in", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if requests is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx[1]) if non2xx else 0
    server = re.search(r"^SERVER_P50_MS ([\d.]+)", output, re.M)
    return (int(requests[1]), float(rps[1]), latency("50"), latency("99"), errors,
            float(server[1]) if server else None)


def run_wrk(url: str, connections: int, seconds: float, script: Path | None = None,
            timeout_s: float = 5.0) -> WrkResult:
    """``wrk -t1 -c N -d S --latency`` against ``url``; never outlives ``seconds`` + 15 s."""
    command = [wrk_binary() or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               f"--timeout={round(timeout_s)}s"]
    if script is not None:
        command += ["-s", str(script)]
    with tempfile.TemporaryFile("w+") as out:
        started = time.monotonic()
        proc = subprocess.Popen([*command, url], stdout=out, stderr=subprocess.STDOUT)
        deadline = started + seconds + 15
        try:
            # Wait for the exit without reaping it (WNOWAIT): the zombie's /proc/<pid>/stat still
            # holds wrk's final CPU times, summed over its threads.
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"wrk did not finish within {seconds + 15:.0f} s")
                time.sleep(0.05)
            wall = time.monotonic() - started
            wrk_cpu = cpu_seconds(proc.pid) / wall
        finally:
            if proc.poll() is None:  # interrupted or timed out: wrk must not outlive the benchmark
                proc.kill()
            proc.wait(5)
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{output}")
    requests, rps, p50, p99, errors, server = parse(output)
    return WrkResult(requests, rps, p50, p99, errors, wrk_cpu, server)
