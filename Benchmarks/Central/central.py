#!/usr/bin/env python3
"""The alternative a chain would otherwise pick: every POS operation as a transaction on a
central PostgreSQL, over a link with 0, 20 and 80 ms of injected round-trip latency (the
project's own relay, `simulate relay --faults`), from 8 lanes (pgbench clients); then the
share of operations served during a 60 s partition. Figures from this run only.

Usage: central.py OUT.json   (run by scripts/bench after the release build)"""
import json, os, signal, subprocess, sys, tempfile, time, glob, socket

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.chdir(root)
out_path = sys.argv[1]
url = subprocess.check_output(["scripts/postgres", "start"], text=True).strip()
port = int(url.rsplit(":", 1)[1].split("/")[0])
bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
lanes, seconds, members = 8, 8, 100_000
rows = []

def psql(sql):
    subprocess.run(as_pg + [f"{bindir}/psql", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-d", "loyalty", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL)

psql(f"""
DROP TABLE IF EXISTS central_purchases; DROP TABLE IF EXISTS central_members;
CREATE TABLE central_members (card bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE central_purchases (id bigserial PRIMARY KEY, lane int NOT NULL, card bigint NOT NULL,
  amount bigint NOT NULL, points bigint NOT NULL);
INSERT INTO central_members SELECT g, 100 FROM generate_series(1, {members}) g;
CREATE OR REPLACE FUNCTION central_purchase(p_card bigint, p_amount bigint, p_lane int) RETURNS bigint AS $$
DECLARE b bigint;
BEGIN
  INSERT INTO central_purchases(lane, card, amount, points) VALUES (p_lane, p_card, p_amount, p_amount / 200);
  UPDATE central_members SET balance = balance + p_amount / 200 WHERE card = p_card RETURNING balance INTO b;
  RETURN b;
END $$ LANGUAGE plpgsql;
""")

work = os.path.abspath(tempfile.mkdtemp(prefix="central-", dir=".build"))
os.chmod(work, 0o777)
script = os.path.join(work, "purchase.sql")
with open(script, "w") as f:
    f.write(f"\\set card random(1, {members})\n\\set amount random(100, 50000)\n"
            "SELECT central_purchase(:card, :amount, :client_id);\n")
os.chmod(script, 0o644)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

relay_port = free_port()
faults = os.path.join(work, "faults.txt")
open(faults, "w").write("latency=0")
relay = subprocess.Popen([".build/release/simulate", "relay", "--listen", f"127.0.0.1:{relay_port}",
                          "--to", f"127.0.0.1:{port}", "--faults", faults])
time.sleep(0.5)

def set_faults(text):
    open(faults, "w").write(text)
    relay.send_signal(signal.SIGHUP)
    time.sleep(0.2)

def pgbench(duration, tag, cut_after=None):
    prefix = os.path.join(work, tag)
    process = subprocess.Popen(as_pg + [f"{bindir}/pgbench", "-n", "-c", str(lanes), "-j", "2", "-T", str(duration),
                                "-f", script, "-h", "127.0.0.1", "-p", str(relay_port), "-U", "postgres",
                                "--log", f"--log-prefix={prefix}", "loyalty"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)
    cut_at = None
    if cut_after is not None:
        time.sleep(cut_after)
        cut_at = time.time()
        relay.send_signal(signal.SIGUSR1)
    out, err = process.communicate()
    if process.returncode not in (0, 2) or "error" in err.lower() and cut_at is None:
        print(out + err, file=sys.stderr)
    latencies, times = [], []
    for path in glob.glob(prefix + "*"):
        for line in open(path):
            fields = line.split()
            # client_id transaction_no time(us) script_no time_epoch time_us
            if len(fields) >= 6 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
                times.append(int(fields[4]) + int(fields[5]) / 1e6)
    return latencies, times, cut_at, out + err

for rtt in (0, 20, 80):
    set_faults(f"latency={rtt // 2}")
    latencies, _, _, text = pgbench(seconds, f"rtt{rtt}")
    latencies.sort()
    rate = len(latencies) / seconds
    p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else 0
    rows.append({"name": f"central PostgreSQL, 8 lanes, {rtt} ms round trip", "value": rate, "unit": "purchases/s",
                 "note": f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms (one transaction per purchase)"})
    print(f"rtt {rtt} ms: {rate:.0f} purchases/s, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms", flush=True)

# A 60 s partition: the link to the central database is cut 2 s into a 62 s run.
set_faults("latency=10")
latencies, times, cut_at, text = pgbench(62, "partition", cut_after=2)
served = sum(1 for t in times if t > cut_at)
before = sum(1 for t in times if t <= cut_at)
expected = max(1, round(before / 2 * 60))
rows.append({"name": "central PostgreSQL: purchases served during a 60 s partition", "value": 100.0 * served / expected,
             "unit": "%", "note": f"{served} served of about {expected} the lanes would have made (20 ms round trip)"})
print(f"partition: {served} served, about {expected} expected", flush=True)
relay.send_signal(signal.SIGTERM)
relay.wait()
json.dump(rows, open(out_path, "w"))
