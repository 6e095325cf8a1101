"""Build the Dockerfile and run the image the two ways docs/running.md ("Container") describes.

    .venv/bin/python .ci/container_check.py [--ca PROXY-CA.pem]

Not part of .ci/run: it needs a Docker daemon and the debian:bookworm-slim image. Where that
image cannot be pulled (no Docker Hub), an equivalent is made from Debian's own packages with
debootstrap (minbase) and tagged debian:bookworm-slim locally. ``--ca`` hands a TLS-inspecting
proxy's CA to pip for the build (a BuildKit secret, not kept in the image).

1. The local demo in a named volume: ``init --demo``, ``poll``, the worker with a read-only
   root file system, stopped by ``docker stop`` (SIGTERM) and exiting 0, ``status``; the files
   belong to the non-root user and are private (0600/0700).
2. Microsoft 365 against the Graph emulator on 127.0.0.1 (host network): the config and the
   emulator's CA read-only in /config, the state in a volume; ``provision`` on a fresh tenant,
   then ``poll`` takes in a concern that was mailed in.
Prints each step; exits non-zero at the first failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGE = "prevent-service-check"
# A Docker CLI with BuildKit (Debian's docker.io has it built in; a newer CLI needs buildx).
DOCKER = os.environ.get("DOCKER", "docker")


def sh(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(args), flush=True)
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.stdout.strip():
        print(result.stdout.rstrip())
    if check and result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(args)}")
    return result


def apt_mirror() -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.suffix not in {".list", ".sources", ""}:
            continue
        for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and words[1].endswith("/debian"):
                return words[1]
            if words[:1] == ["deb"] and any(w.endswith("/debian") for w in words):
                return next(w for w in words if w.endswith("/debian"))
    raise SystemExit("no Debian mirror found in /etc/apt/sources.list(.d) for debootstrap")


def base_image() -> None:
    found = sh(DOCKER, "image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim", check=False)
    if found.returncode == 0:
        return
    if sh(DOCKER, "pull", "debian:bookworm-slim", check=False).returncode == 0:
        return
    print("no debian:bookworm-slim to pull: making it from Debian's packages (debootstrap)")
    with tempfile.TemporaryDirectory(prefix="bookworm-") as root:
        sh("debootstrap", "--variant=minbase", "bookworm", root, apt_mirror())
        shutil.rmtree(Path(root) / "var/lib/apt/lists", ignore_errors=True)
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", root, "-c", "."], stdout=subprocess.PIPE
        )
        sh(DOCKER, "import", "-", "debian:bookworm-slim", stdin=tar.stdout)
        tar.wait()


def build(ca: str | None) -> None:
    args = [DOCKER, "build", "-t", IMAGE, str(ROOT)]
    if ca:
        args[2:2] = ["--secret", f"id=ca,src={ca}"]
    sh(*args, env={**os.environ, "DOCKER_BUILDKIT": "1"})


def local_demo() -> None:
    volume = "prevent-check-demo"
    sh(DOCKER, "volume", "rm", "-f", volume, check=False)
    run = [DOCKER, "run", "--rm", "-v", f"{volume}:/state"]
    cfg = ["-e", "PREVENT_SERVICE_CONFIG=/state/demo/config.toml"]
    try:
        uid = sh(*run, "--entrypoint", "id", IMAGE, "-u").stdout.strip()
        gid = sh(*run, "--entrypoint", "id", IMAGE, "-g").stdout.strip()
        assert (uid, gid) == ("10001", "10001"), ("the container's user", uid, gid)
        sh(*run, IMAGE, "init", "--demo", "/state/demo")
        sh(*run, *cfg, IMAGE, "poll")
        name = "prevent-check-worker"
        sh(DOCKER, "rm", "-f", name, check=False)
        sh(
            DOCKER, "run", "-d", "--name", name, "-v", f"{volume}:/state", *cfg,
            "--read-only", "--tmpfs", "/tmp", IMAGE,  # noqa: S108 (inside the container)
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while "intake cycle" not in sh(DOCKER, "logs", name, check=False).stderr:
            assert time.monotonic() < deadline, "the worker did not run an intake cycle"
            time.sleep(2)
        sh(DOCKER, "stop", "-t", "120", name)
        code = sh(DOCKER, "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        logs = sh(DOCKER, "logs", name, check=False)
        sh(DOCKER, "rm", name)
        assert code == "0" and "worker stopped" in logs.stdout, (code, logs.stdout)
        print("worker stopped cleanly on SIGTERM (exit 0)")
        status = sh(*run, *cfg, IMAGE, "status", check=False)
        assert status.returncode in (0, 1) and status.stdout.strip(), status
        listing = sh(
            *run, "--entrypoint", "sh", IMAGE, "-c",
            "stat -c '%a %u %n' /state/demo/state/ledger.sqlite3 /state/demo/outbox "
            "/state/demo/outbox/*.eml /state/demo/inbox/processed/* | sort -u",
        ).stdout  # fmt: skip
        for line in listing.splitlines():
            mode, owner, _ = line.split(" ", 2)
            assert owner == uid, line
            assert mode in ("600", "700"), line
        print("files belong to the service's user and are private")
    finally:
        sh(DOCKER, "volume", "rm", "-f", volume, check=False)


def microsoft_365() -> None:
    from tests.cli.helpers import run_cli
    from tests.cli.test_e2e_graph import REGISTER
    from tests.cli.test_provision import tenant
    from tests.connectors.harness_graph import MAILBOX, SECRET, SECRET_ENV, SITE_HOST, SITE_PATH
    from tests.connectors.test_mailbox_contract import make_raw
    from tests.graph_emulator import GraphEmulator

    volume = "prevent-check-m365"
    sh(DOCKER, "volume", "rm", "-f", volume, check=False)
    with GraphEmulator() as graph, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "service"
        assert run_cli("init", "--demo", str(folder)).returncode == 0
        tenant(graph, folder)
        config_dir = Path(tmp) / "config"
        config_dir.mkdir()
        shutil.copy(graph.ca_path, config_dir / "graph-ca.pem")
        text = (folder / "config.toml").read_text(encoding="utf-8")
        text = text.replace(f'ca_bundle = "{graph.ca_path}"', 'ca_bundle = "/config/graph-ca.pem"')
        text, n = re.subn(r'(?m)^path = "state".*$', 'path = "/state"', text)
        assert n == 1, "no [state] path in the config"
        (config_dir / "config.toml").write_text(text, encoding="utf-8")
        for path in (config_dir, *config_dir.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's user
        Path(tmp).chmod(0o755)
        run = [
            DOCKER, "run", "--rm", "--network", "host", "-v", f"{config_dir}:/config:ro",
            "-v", f"{volume}:/state", "-e", f"{SECRET_ENV}={SECRET}", IMAGE,
        ]  # fmt: skip
        try:
            provisioned = sh(*run, "provision", check=False)
            assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
            assert graph.get_file(SITE_HOST, SITE_PATH, REGISTER)
            raw = make_raw(
                "Concern about a learner",
                "A learner said something worrying in class today.",
                message_id="<container-check@example.org>",
            )
            graph.deliver(MAILBOX, raw)
            polled = sh(*run, "poll", check=False)
            assert polled.returncode == 0, polled.stdout + polled.stderr
            # The mailed concern and the demo Forms workbook's two responses.
            assert "new=3" in polled.stdout and "rows=3 " in polled.stdout, polled.stdout
            print("provision and poll ran in the container against the Graph emulator")
        finally:
            sh(DOCKER, "volume", "rm", "-f", volume, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ca", help="a TLS-inspecting proxy's CA bundle, for pip in the build")
    args = parser.parse_args()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # the emulator's CA is passed itself
        os.environ.pop(name, None)
    base_image()
    build(args.ca)
    local_demo()
    microsoft_365()
    print("container check: all steps passed")


if __name__ == "__main__":
    main()
