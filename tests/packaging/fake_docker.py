"""A stand-in for the `docker` CLI (no Docker engine on test machines), put first on PATH by the tests.

It prints and records every call (`fake-docker: <args>` on stdout, one JSON line per call in
$FAKE_DOCKER_STATE/calls.jsonl) and plays the containers of docker-compose.yml with the checkout itself as
the image: `compose run/exec app CMD` runs CMD here, `compose up -d` starts the image's CMD (migrate, then
gunicorn with gunicorn.conf.py) in the background unless it already runs. A container's environment is built
as Docker would: the image's ENV, then `.env` (env_file), then the service's `environment:`; the volumes
/data and /logs are directories under $FAKE_DOCKER_STATE, and the published 127.0.0.1:$APP_PORT is where
gunicorn listens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ["FAKE_DOCKER_STATE"])
PIDFILE = STATE / "app.pid"


def container_env() -> dict[str, str]:
    """The app container's environment."""
    # Imported here: `compose version` and `compose build` answer without loading the app's config.
    sys.path.insert(0, str(ROOT))
    from dotenv import dotenv_values

    from tests.packaging import images

    dotenv = {k: v or "" for k, v in dotenv_values(Path.cwd() / ".env").items()}
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(STATE),
        "LANG": "C.UTF-8",
        **images.image_env(),
        **dotenv,
        **{k: str(v) for k, v in images.compose()["services"]["app"]["environment"].items()},
    }
    for name, value in env.items():
        for volume in ("/data/", "/logs/"):
            if value.startswith(volume):
                env[name] = str(STATE / volume.strip("/") / value[len(volume) :])
    env["GUNICORN_BIND"] = f"127.0.0.1:{dotenv.get('APP_PORT') or 8000}"  # the published port
    return env


def running() -> bool:
    """Whether the `up -d` gunicorn is alive (a zombie left for init to reap counts as gone)."""
    if not PIDFILE.exists():
        return False
    try:
        stat = Path(f"/proc/{int(PIDFILE.read_text())}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def main(args: list[str]) -> int:
    """Entry point."""
    if args[:2] != ["compose", "version"]:  # deploy.sh reads that one's output
        print("fake-docker:", " ".join(args), flush=True)
    with (STATE / "calls.jsonl").open("a", encoding="utf-8") as calls:
        calls.write(json.dumps(args) + "\n")
    match args:
        case ["compose", "version", "--short"]:
            print("2.29.1")
            return 0
        case ["compose", "build"]:
            return 0
        case ["compose", "run", "--rm", "app", *command] | ["compose", "exec", "-T", "app", *command]:
            return subprocess.run(command, cwd=ROOT, env=container_env(), check=False).returncode
        case ["compose", "up", "-d"]:
            if running():
                print("Container app Running (up-to-date)")
                return 0
            for volume in ("data", "logs"):
                (STATE / volume).mkdir(exist_ok=True)
            env = container_env()
            from tests.packaging import images

            with (STATE / "app.out").open("ab") as out:
                proc = subprocess.Popen(
                    images.image_cmd(), cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
                )
            PIDFILE.write_text(str(proc.pid))
            print("Container app Started")
            return 0
    print(f"fake docker: not simulated: {args}", file=sys.stderr)
    return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
