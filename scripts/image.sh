#!/usr/bin/env bash
# Builds the siemflow container image WITHOUT a Docker engine, as the Dockerfile would,
# and checks it. The file system comes from the script the Dockerfile runs
# (deploy/image/assemble-rootfs.sh); the image settings (USER, WORKDIR, ENV, EXPOSE,
# VOLUME, ENTRYPOINT, CMD) are read from the Dockerfile's last stage. So the two builds
# produce the same image from one definition.
#
#   1. installs umoci and skopeo (Debian) when missing;
#   2. builds the release binary (or takes $SIEMFLOW_BINARY) and lays out the file system;
#   3. packs it with umoci into an OCI layout, target/image/oci (tag siemflow:<version>),
#      and exports target/image/siemflow-<version>.tar for `docker load`/`podman load`;
#   4. checks the image itself (unpacked again from the OCI layout): its config against
#      the Dockerfile, its size, that the binary carries no debug sections, and that it
#      runs from the unpacked root file system as user 65532 (chroot): `--version`,
#      `validate` of the shipped pipeline, and the shipped pipeline running until /health
#      answers, then SIGTERM and exit 0.
#
# Needs root (chroot, and files owned by 65532). Exit 1 on any failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="siemflow"))')
out=target/image
image="$out/oci:siemflow-$version"
# The image must stay small: the binary and a few libraries. A binary with its debug
# sections (~166 MB) or anything else large slipping in fails the build.
max_image_mib=100

# --- tools: installed only when missing.
if [ "$(id -u)" -ne 0 ]; then
    # A CI runner that is not root usually has password-less sudo, as test-deps.sh assumes.
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -E env "PATH=$PATH" "$0" "$@"
    fi
    echo "image.sh needs root: chroot into the image, files owned by 65532 (sudo -E $0)" >&2
    exit 1
fi
source scripts/install.sh
ensure_debian_packages umoci skopeo binutils

# --- the image settings, from the Dockerfile's last stage.
dockerfile_settings() {
    python3 - "$1" <<'PY'
import json, shlex, sys
lines, stage = [], []
for raw in open(sys.argv[1]).read().replace("\\\n", " ").splitlines():
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    if line.upper().startswith("FROM "):
        stage = []
    stage.append(line)
settings = {"Env": [], "ExposedPorts": [], "Volumes": []}
for line in stage:
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "USER":
        settings["User"] = rest.strip()
    elif word == "WORKDIR":
        settings["WorkingDir"] = rest.strip()
    elif word == "ENV":
        settings["Env"].append(rest.strip())
    elif word == "EXPOSE":
        settings["ExposedPorts"] += rest.split()
    elif word == "VOLUME":
        settings["Volumes"] += json.loads(rest)
    elif word in ("ENTRYPOINT", "CMD"):
        settings["Entrypoint" if word == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
    elif word == "COPY":
        # The last stage takes the assembled file system and nothing else.
        if "/rootfs/" not in rest:
            sys.exit(f"Dockerfile: the last stage copies something besides /rootfs: {line}")
print(json.dumps(settings))
PY
}
settings=$(dockerfile_settings Dockerfile)

# SIEMFLOW_BINARY: pack a release binary built already (from this tree) instead.
binary=${SIEMFLOW_BINARY:-target/release/siemflow}
if [ -z "${SIEMFLOW_BINARY:-}" ]; then
    echo "== release build"
    started=$(date +%s)
    cargo build --release --locked --bin siemflow
    echo "release build: $(( $(date +%s) - started )) s"
fi

echo "== file system (deploy/image/assemble-rootfs.sh, as in the Dockerfile)"
rm -rf "$out"
mkdir -p "$out"
deploy/image/assemble-rootfs.sh "$binary" pipeline.toml "$out/rootfs"

echo "== OCI image (umoci)"
umoci init --layout "$out/oci"
umoci new --image "$image"
umoci unpack --image "$image" "$out/bundle" >/dev/null
cp -a "$out/rootfs/." "$out/bundle/rootfs/"
umoci repack --image "$image" "$out/bundle"
config_args=$(python3 - "$settings" <<'PY'
import json, shlex, sys
s = json.loads(sys.argv[1])
args = ["--os", "linux", "--architecture", "amd64", "--config.user", s["User"],
        "--config.workingdir", s["WorkingDir"], "--clear=config.entrypoint", "--clear=config.cmd"]
args += [a for e in s["Env"] for a in ("--config.env", e)]
args += [a for p in s["ExposedPorts"] for a in ("--config.exposedports", p)]
args += [a for v in s["Volumes"] for a in ("--config.volume", v)]
args += [a for e in s["Entrypoint"] for a in ("--config.entrypoint", e)]
args += [a for c in s["Cmd"] for a in ("--config.cmd", c)]
print(shlex.join(args))
PY
)
eval "umoci config --image \"$image\" $config_args"
umoci gc --layout "$out/oci"
skopeo copy --quiet "oci:$image" "docker-archive:$out/siemflow-$version.tar:siemflow:$version"

echo "== checks"
python3 - "$out" "$image" "$settings" "$max_image_mib" <<'PY'
import json, os, pathlib, signal, socket, subprocess, sys, time, urllib.request

out, image, settings, max_mib = pathlib.Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
failed = []
checks = 0

def check(ok, what):
    global checks
    checks += 1
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failed.append(what)

# The image's config, as a registry or a runtime reads it.
config = json.loads(subprocess.check_output(["skopeo", "inspect", "--config", f"oci:{image}"]))["config"]
check(config.get("User") == settings["User"], f"user {config.get('User')} (Dockerfile: {settings['User']})")
check(config.get("User", "").split(":")[0] not in ("", "0", "root"), "runs as a non-root user")
check(config.get("Entrypoint") == settings["Entrypoint"], f"entrypoint {config.get('Entrypoint')}")
check(config.get("Cmd") == settings["Cmd"], f"cmd {config.get('Cmd')}")
check(sorted(config.get("ExposedPorts", {})) == sorted(settings["ExposedPorts"]), f"exposed ports {sorted(config.get('ExposedPorts', {}))}")
check(sorted(config.get("Volumes", {})) == sorted(settings["Volumes"]), f"volumes {sorted(config.get('Volumes', {}))}")
check(config.get("WorkingDir") == settings["WorkingDir"], f"working dir {config.get('WorkingDir')}")
check(all(e in config.get("Env", []) for e in settings["Env"]), f"env {config.get('Env')}")

# Its size: the compressed layers (what a pull moves) and the unpacked files.
manifest = json.loads(subprocess.check_output(["skopeo", "inspect", "--raw", f"oci:{image}"]))
compressed = sum(layer["size"] for layer in manifest["layers"])
check(compressed <= max_mib * 2**20, f"compressed layers {compressed / 2**20:.1f} MiB in {len(manifest['layers'])} layer(s) (at most {max_mib} MiB)")

# The image itself, unpacked again from the OCI layout (not the staging folder).
subprocess.run(["umoci", "unpack", "--image", image, str(out / "check")], check=True, stdout=subprocess.DEVNULL)
root = out / "check" / "rootfs"
size = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
check(size <= max_mib * 2**20, f"unpacked {size / 2**20:.1f} MiB (at most {max_mib} MiB)")
binary = root / settings["Entrypoint"][0].lstrip("/")
sections = subprocess.check_output(["objdump", "-h", str(binary)], text=True)
# (.debug_gdb_scripts is loaded data, not debug information: strip keeps it.)
carried = [s for s in (".debug_info", ".debug_line", ".symtab") if s in sections]
check(not carried, f"binary stripped ({binary.stat().st_size / 2**20:.1f} MiB; debug sections or symbols: {carried or 'none'})")
data = root / settings["WorkingDir"].lstrip("/")
check(data.stat().st_uid == 65532, f"{settings['WorkingDir']} owned by 65532")
check((root / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000, "CA bundle present")
print("      files: " + ", ".join(sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())))

uid, gid = (int(x) for x in settings["User"].split(":"))
env = dict(e.split("=", 1) for e in config.get("Env", []))

def inside(workdir):
    def enter():
        os.chroot(root)
        os.chdir(workdir)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return enter

def run(args, **kw):
    return subprocess.run(settings["Entrypoint"] + args, preexec_fn=inside(settings["WorkingDir"]),
                          env=env, capture_output=True, text=True, timeout=120, **kw)

version = run(["--version"])
check(version.returncode == 0 and version.stdout.startswith("siemflow "), f"--version in the image as {uid}: {version.stdout.strip() or version.stderr.strip()}")
shipped = settings["Cmd"][settings["Cmd"].index("--config") + 1]
validate = run(["validate", shipped])
check(validate.returncode == 0, f"validate {shipped}: {(validate.stdout + validate.stderr).strip()}")

# The image's default command, as `docker run` starts it; the API on a free port.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env["SIEMFLOW_API"] = f"127.0.0.1:{port}"
log = open(out / "run.log", "w")
process = subprocess.Popen(settings["Entrypoint"] + settings["Cmd"], preexec_fn=inside(settings["WorkingDir"]),
                           env=env, stdout=subprocess.DEVNULL, stderr=log)
health = None
deadline = time.monotonic() + 60
while time.monotonic() < deadline and process.poll() is None:
    try:
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status
        break
    except OSError:
        time.sleep(0.2)
check(health == 200, f"the default command serves /health (answer: {health})")
process.send_signal(signal.SIGTERM)
try:
    code = process.wait(timeout=60)
except subprocess.TimeoutExpired:
    process.kill()
    code = None
check(code == 0, f"SIGTERM: drained and exited {code} (log: {out / 'run.log'})")

passed = checks - len(failed)
print(f"image checks: {passed} passed, {len(failed)} failed")
if failed:
    sys.exit(1)
PY
echo "image: $out/oci (siemflow-$version), $out/siemflow-$version.tar ($(du -m "$out/siemflow-$version.tar" | cut -f1) MiB)"
