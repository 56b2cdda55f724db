"""An HMAC-SHA256 edge device on MicroPython: sign a task, publish it, print the agent's reply.

    micropython main.py [--config DIR] [--target NODE] [--kernel K] [--params JSON] [--tcp]
                        [--timeout S] [--ttl S] [--every S [--count N]]

On a board this file runs at boot with config.py beside it and no arguments (the defaults:
one `stats` task, or the sensor loop if `EVERY_S` is set in config.py). Each reply is printed
as lines `reply TOPIC`, `envelope HEX` (the whole signed envelope, for a verifier with Ed25519),
`status S`, then `result JSON` or `error CODE: MESSAGE`. Exit status as edge-submit's: 0
completed, 1 not completed, 2 bad usage or config.py, 3 no reply in time, 4 broker unreachable,
login or subscription refused, or TLS failed. Single-threaded: everything runs in this loop.
"""

import binascii
import json
import math
import sys
import time

sys.path.append(sys.path[0] + "/lib" if sys.path[0] else "lib")  # the vendored micropython-lib modules

import link
import mpack
import settings
import task

EXIT_OK, EXIT_NOT_COMPLETED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_BROKER = 0, 1, 2, 3, 4
FLAGS = {"--config", "--target", "--kernel", "--params", "--timeout", "--ttl", "--every", "--count"}
SWITCHES = {"--tcp": False, "--tls": True}
DEFAULT_SIGNAL = [1.0, 2.0, 3.0, 4.0]
WINDOW = 8  # readings per task in the sensor loop
NOTE = (
    "note: the agent's Ed25519 signature is not verified here (MicroPython has none); "
    "the reply is trusted because only agents may publish on replies topics (broker ACL)"
)


class UsageError(ValueError):
    """A bad command-line argument."""


def parse_args(argv):
    """{flag: value} of `argv` (MicroPython has no argparse)."""
    opts = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in SWITCHES:
            opts["USE_TLS"] = SWITCHES[arg]
        elif arg in FLAGS and i + 1 < len(argv):
            i += 1
            opts[arg] = argv[i]
        else:
            raise UsageError("unknown or incomplete argument " + repr(arg) + "; see main.py's docstring")
        i += 1
    return opts


def _number(opts, flag, default):
    try:
        value = float(opts.get(flag, default))
    except ValueError:
        raise UsageError(flag + " must be a number of seconds") from None
    if value <= 0:
        raise UsageError(flag + " must be positive")
    return value


def load_settings(opts):
    """config.py from --config DIR (default: beside main.py), checked, with the flags applied."""
    base = opts.get("--config", "")
    if base:
        sys.path.insert(0, base)
        base = base.rstrip("/") + "/"
    try:
        import config
    except ImportError:
        raise settings.SettingError("no config.py in " + (base or "this directory")) from None
    except SyntaxError as exc:
        raise settings.SettingError(f"config.py does not parse: {exc}") from None
    overrides = {k: opts[k] for k in ("USE_TLS",) if k in opts}
    if "--target" in opts:
        overrides["TARGET"] = opts["--target"]
    s = settings.check(config, overrides)
    if s.TARGET is None:
        raise settings.SettingError("config.py: TARGET is None: give --target NODE (or 'all', 'pool:NAME')")
    s.EVERY_S = getattr(config, "EVERY_S", None)
    return s, base


def _plain(value):
    """A decoded value as JSON can show it: arrays as nested lists, bytes as hex."""
    if isinstance(value, mpack.Array):
        return value.values
    if isinstance(value, (bytes, bytearray)):
        return binascii.hexlify(value).decode()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def show(topic, payload, task_id):
    """Print a reply; its exit status."""
    print("reply", topic)
    print("envelope", binascii.hexlify(payload).decode())
    try:
        env, result = task.read_reply(payload, task_id)
    except task.ReplyError as exc:
        print("error unreadable_reply:", exc)
        return EXIT_NOT_COMPLETED
    print("signed-by", env["kid"])
    print("status", result.get("status"))
    if result.get("status") == "completed":
        print("result", json.dumps(_plain(result.get("result"))))
        return EXIT_OK
    error = result.get("error") or {}
    print("error {}: {}".format(error.get("code"), error.get("message")))
    return EXIT_NOT_COMPLETED


def run_task(conn, s, kernel, params, opts):
    """Sign and publish one task, wait for its reply, print it; the exit status."""
    body = task.body(kernel, params, s.TARGET, task.now(), opts["--ttl"])
    topic = task.topic_for(s.PREFIX, s.TARGET)
    conn.publish(topic, task.envelope(s.KID, s.SECRET, mpack.packb(body)))
    print("sent", body["id"], kernel, "on", topic)
    payload = conn.wait_reply(body["id"], opts["--timeout"])
    if payload is None:
        print("timeout: no reply to", body["id"])
        return EXIT_TIMEOUT
    return show(conn.replies + body["id"], payload, body["id"])


def read_sensor():
    """One reading. Replace with the board's sensor, e.g. `machine.ADC(machine.Pin(34)).read_u16()`."""
    return 20.0 + 5.0 * math.sin(time.ticks_ms() / 1000.0)


def sensor_loop(conn, s, every_s, count, opts):
    """Every `every_s` seconds, the stats of WINDOW readings; reconnects after a broken link.
    The worst exit status of the rounds (`count` rounds; 0 for ever)."""
    worst = EXIT_OK
    done = 0
    while count == 0 or done < count:
        try:
            if conn.client is None:
                conn.connect()
            status = run_task(conn, s, "stats", {"signal": [read_sensor() for _ in range(WINDOW)]}, opts)
        except link.LinkError as exc:
            print("error broker:", exc)
            conn.close()
            status = EXIT_BROKER
        worst = max(worst, status)
        done += 1
        if count == 0 or done < count:
            _pause(conn, every_s)
    return worst


def _pause(conn, seconds):
    """Wait between rounds, answering the broker's keepalive while connected."""
    if conn.client is not None:
        try:
            conn.idle(seconds)
            return
        except link.LinkError as exc:
            print("error broker:", exc)
            conn.close()
    time.sleep(seconds)


def run(argv):
    opts = parse_args(argv)
    s, base = load_settings(opts)
    kernel = opts.get("--kernel", "stats")
    try:
        params = json.loads(opts["--params"]) if "--params" in opts else {"signal": DEFAULT_SIGNAL}
    except ValueError:
        raise UsageError("--params must be a JSON object") from None
    if not isinstance(params, dict):
        raise UsageError("--params must be a JSON object")
    every = opts.get("--every", s.EVERY_S)
    every_s = _number({"--every": every}, "--every", 0) if every else None
    opts["--ttl"] = _number(opts, "--ttl", 300)
    opts["--timeout"] = _number(opts, "--timeout", 30)
    try:
        count = int(opts.get("--count", 0))
    except ValueError:
        raise UsageError("--count must be a whole number") from None
    print(NOTE)
    conn = link.Link(s, base)
    try:
        if every_s:
            return sensor_loop(conn, s, every_s, count, opts)  # connects, and reconnects, itself
        conn.connect()
        return run_task(conn, s, kernel, params, opts)
    finally:
        conn.close()


def main(argv):
    try:
        return run(argv)
    except (UsageError, settings.SettingError) as exc:
        print("error:", exc)
        return EXIT_USAGE
    except link.LinkError as exc:
        print("error broker:", exc)
        return EXIT_BROKER


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
