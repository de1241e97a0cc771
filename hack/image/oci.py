#!/usr/bin/env python3
"""Assembles the image the Dockerfile describes as an OCI image layout archive, without Docker.

    oci.py --dockerfile Dockerfile --binary target/release/node-agent-webhook \
           --out _out/image/node-agent-webhook.oci.tar --name node-agent-webhook:latest \
           --source-date-epoch 1796600834 --build-arg VERSION=0.1.0 ...

The Dockerfile stays the one source of truth for what our stage adds: this reads its final
stage (ARG, LABEL, COPY, USER, EXPOSE, ENTRYPOINT, CMD) and refuses any other instruction, so a
new one is taught here before it can be silently left out. What the stage inherits from
gcr.io/distroless/cc-debian12:nonroot cannot be read from the Dockerfile; `base_layer` rebuilds
the part of that base the binary uses, from this Debian 12 machine (tests/image.rs holds both to
the Dockerfile and runs the binary on the layers alone).

Reproducible: every entry has the mtime SOURCE_DATE_EPOCH, numeric owners and no user or group
names, entries are sorted, gzip carries no name nor time; the same inputs give the same bytes.
Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time

# The one base image this script knows how to stand in for.
BASE_IMAGE = "gcr.io/distroless/cc-debian12:nonroot"
# Inherited from the base image's config (distroless static/static.bzl: env, user, workdir).
BASE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
]
BASE_WORKDIR = "/home/nonroot"
NONROOT = 65532
BASE_USER = str(NONROOT)
NOBODY = 65534
# distroless common/BUILD.bazel: its passwd and group entries, in its order.
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:{NOBODY}:\ntty:x:5:\nstaff:x:50:\nnonroot:x:{NONROOT}:\n"
# distroless static/nsswitch.conf: "files" first, so /etc/hosts (the kubelet's) answers before DNS.
NSSWITCH = (
    "passwd:         compat\ngroup:          compat\nshadow:         compat\n"
    "gshadow:        files\n\nhosts:          files dns\nnetworks:       files\n\n"
    "protocols:      db files\nservices:       db files\nethers:         db files\n"
    "rpc:            db files\n\nnetgroup:       nis\n"
)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The NSS module NSSWITCH names that glibc 2.36 does not build into libc.so.6 ("files" and "dns"
# are built in): getpwuid_r, which finds the home directory when HOME is unset, loads it by name.
NSS_MODULES = ["libnss_compat.so.2"]

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class DockerfileError(Exception):
    pass


# ---- the Dockerfile -------------------------------------------------------------------------


def instructions(text):
    """(line number, KEYWORD, rest) for each instruction: comments dropped, continuations joined."""
    out, parts, start = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if start is None:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, rest = " ".join(p for p in parts if p).partition(" ")
        out.append((start, keyword.upper(), rest.strip()))
        parts, start = [], None
    if parts:
        raise DockerfileError(f"line {start}: a continuation runs past the end of the file")
    return out


def substitute(value, args, where):
    """${NAME} and $NAME from the ARGs in scope, as Docker expands them in LABEL, USER, EXPOSE."""

    def one(match):
        name = match.group(1) or match.group(2)
        if name not in args:
            raise DockerfileError(f"{where}: ${name} is no ARG of this stage")
        return args[name]

    if re.search(r"\$\{[^}]*[:?+-]", value):
        raise DockerfileError(f"{where}: only plain ${{NAME}} is understood in {value!r}")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, value)


def declare(rest, build_args):
    """An ARG instruction's names with their values: the build arg if given, else the default."""
    values = {}
    for token in shlex.split(rest):
        name, _, default = token.partition("=")
        values[name] = build_args.get(name, default)
    return values


def final_stage(text, build_args):
    """What the Dockerfile's last stage declares, with ARG defaults and build args substituted."""
    stages, globals_ = [], {}
    for number, keyword, rest in instructions(text):
        if keyword == "FROM":
            stages.append({"line": number, "from": rest, "body": []})
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(f"line {number}: {keyword} before the first FROM")
            globals_.update(declare(rest, build_args))
        else:
            stages[-1]["body"].append((number, keyword, rest))
    if not stages:
        raise DockerfileError("no FROM")
    stage = stages[-1]
    base = substitute(stage["from"].split()[0], globals_, f"line {stage['line']}")
    if base != BASE_IMAGE:
        raise DockerfileError(f"line {stage['line']}: the final stage is FROM {base}; "
                              f"this script stands in for {BASE_IMAGE} only")
    builders = [s["from"].split()[-1] for s in stages[:-1] if " AS " in s["from"].upper()]

    args, labels, ports, copies = {}, {}, [], []
    # Without USER, ENTRYPOINT or CMD the base's stand: its user, and no command (distroless).
    out = {"labels": labels, "ports": ports, "user": BASE_USER, "entrypoint": None, "cmd": None}
    for number, keyword, rest in stage["body"]:
        where = f"line {number}"
        if keyword == "ARG":
            args.update(declare(rest, build_args))
        elif keyword == "LABEL":
            for token in shlex.split(rest):
                key, eq, value = token.partition("=")
                if not eq:
                    raise DockerfileError(f"{where}: LABEL {token!r} is not key=value")
                labels[substitute(key, args, where)] = substitute(value, args, where)
        elif keyword == "USER":
            out["user"] = substitute(rest, args, where)
        elif keyword == "EXPOSE":
            for token in rest.split():
                port = substitute(token, args, where)
                ports.append(port if "/" in port else port + "/tcp")
        elif keyword in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except json.JSONDecodeError:
                value = None
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                # The shell form runs /bin/sh -c, and distroless has no shell.
                raise DockerfileError(f"{where}: {keyword} must be the JSON (exec) form")
            out[keyword.lower()] = value
        elif keyword == "COPY":
            copies.append((where, shlex.split(rest)))
        else:
            raise DockerfileError(f"{where}: {keyword} in the final stage is not reproduced by "
                                  "hack/image/oci.py; teach it there first")
    if len(copies) != 1:
        raise DockerfileError(f"the final stage has {len(copies)} COPY; one, the binary, is expected")
    where, tokens = copies[0]
    flags = dict(t[2:].partition("=")[::2] for t in tokens if t.startswith("--"))
    paths = [t for t in tokens if not t.startswith("--")]
    if flags.get("from") not in builders or len(paths) != 2 or set(flags) - {"from", "chown", "chmod"}:
        raise DockerfileError(f"{where}: expected COPY --from=<build stage> [--chown=U:G] "
                              "[--chmod=MODE] <binary> <destination>")
    uid, _, gid = flags.get("chown", "0:0").partition(":")
    out["binary"] = {"path": paths[1], "mode": int(flags.get("chmod", "0755"), 8),
                     "uid": int(uid), "gid": int(gid or uid)}
    return out


# ---- layers ---------------------------------------------------------------------------------


class Entry:
    """One tar entry: a directory, a regular file (bytes or a host path) or a symlink."""

    def __init__(self, path, kind, mode, uid=0, gid=0, data=None, source=None, target=None):
        self.path, self.kind, self.mode = path.strip("/"), kind, mode
        self.uid, self.gid, self.data, self.source, self.target = uid, gid, data, source, target


def with_parents(entries):
    """Adds a root-owned 0755 directory for every parent not listed, as a base image has them."""
    have = {e.path for e in entries}
    out = list(entries)
    for entry in entries:
        parent = os.path.dirname(entry.path)
        while parent and parent not in have:
            out.append(Entry(parent, "dir", 0o755))
            have.add(parent)
            parent = os.path.dirname(parent)
    return sorted(out, key=lambda e: e.path)


def shared_libraries(binary):
    """The host paths of the libraries the dynamic loader maps for `binary`, and the loader.

    ldd lists the whole closure (libm needs libc, every library needs the loader), resolved the
    way the loader resolves them on this machine; a library it cannot find fails the build.
    """
    listing = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in listing.splitlines():
        line = line.strip()
        if "not found" in line:
            raise SystemExit(f"oci: {binary}: {line}")
        match = re.match(r"(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            paths.append(match.group(1))
        elif not line.startswith("linux-vdso") and "statically linked" not in line:
            raise SystemExit(f"oci: unexpected ldd line for {binary}: {line!r}")
    return paths


def host_file(path, seen):
    """Entries that reproduce `path` as Debian's packages lay it out: a symlink stays a symlink
    (e.g. /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2) and its
    target follows; a regular file keeps its mode."""
    if path in seen:
        return []
    seen.add(path)
    if os.path.islink(path):
        target = os.readlink(path)
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        return [Entry(path, "symlink", 0o777, target=target)] + host_file(resolved, seen)
    return [Entry(path, "file", os.stat(path).st_mode & 0o7777, source=path)]


def base_layer(binary):
    """The part of distroless cc-debian12:nonroot the binary uses, from this Debian 12 machine.

    Where it differs from distroless: glibc (libc, libm, the loader) and libgcc_s come from this
    machine's Debian 12 packages, not from distroless's snapshot of the same release (the same
    ABI; the point release may differ); only the libraries the binary maps and the NSS module
    its nsswitch.conf needs are shipped, so the rest of libc6 and distroless's libssl3,
    libstdc++6 and libgomp1 are left out; and so are tzdata, netbase,
    media-types, base-files and /etc/os-release, which the binary does not read. Kept as
    distroless has them: /etc/passwd, /etc/group, /etc/nsswitch.conf, the CA bundle, /tmp
    (1777), /root (0700) and /home/nonroot (0700, owned by 65532).
    """
    seen, entries = set(), [
        Entry("etc/passwd", "file", 0o644, data=PASSWD.encode()),
        Entry("etc/group", "file", 0o644, data=GROUP.encode()),
        Entry("etc/nsswitch.conf", "file", 0o644, data=NSSWITCH.encode()),
        Entry(CA_BUNDLE, "file", 0o644, source=os.path.realpath(CA_BUNDLE)),
        Entry("tmp", "dir", 0o1777),
        Entry("root", "dir", 0o700),
        Entry("home", "dir", 0o755),
        Entry("home/nonroot", "dir", 0o700, uid=NONROOT, gid=NONROOT),
    ]
    libraries = shared_libraries(binary)
    libc = next(p for p in libraries if os.path.basename(p) == "libc.so.6")
    libraries += [os.path.join(os.path.dirname(libc), m) for m in NSS_MODULES]
    for path in libraries:
        entries += host_file(path, seen)
    return with_parents(entries)


def app_layer(binary, spec):
    """What the Dockerfile's COPY adds: the binary, with the owner and mode it gives."""
    b = spec["binary"]
    return with_parents([Entry(b["path"], "file", b["mode"], b["uid"], b["gid"], source=binary)])


class Hashing(io.RawIOBase):
    """A write-through stream that counts and hashes what passes."""

    def __init__(self, sink):
        super().__init__()
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def write_tar(entries, sink, mtime):
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mtime, info.mode, info.uid, info.gid = mtime, e.mode, e.uid, e.gid
            info.uname = info.gname = ""
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                info.size = os.path.getsize(e.source)
                with open(e.source, "rb") as f:
                    tar.addfile(info, f)


def write_layer(entries, blobs, mtime):
    """Writes a gzip'd layer into blobs/sha256; returns (descriptor, diff_id)."""
    fd, tmp = tempfile.mkstemp(dir=blobs)
    with os.fdopen(fd, "wb") as out:
        compressed = Hashing(out)
        # mtime=0 and no file name: gzip -n; level 6 is what gzip and Go's default give.
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=compressed, mtime=0) as gz:
            plain = Hashing(gz)
            write_tar(entries, plain, mtime)
    digest = compressed.sha.hexdigest()
    os.replace(tmp, os.path.join(blobs, digest))
    return ({"mediaType": MEDIA_LAYER, "digest": "sha256:" + digest, "size": compressed.size},
            "sha256:" + plain.sha.hexdigest())


def write_json_blob(value, blobs, media_type):
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def full_reference(name):
    """The name as containerd's CRI looks it up: node-agent-webhook:latest is
    docker.io/library/node-agent-webhook:latest (distribution/reference's normalization)."""
    domain, slash, rest = name.partition("/")
    if not slash:
        domain, rest = "docker.io", "library/" + name
    elif not ("." in domain or ":" in domain or domain == "localhost"):
        domain, rest = "docker.io", name
    if "@" not in rest and ":" not in rest.rsplit("/", 1)[-1]:
        rest += ":latest"
    return f"{domain}/{rest}"


def rfc3339(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def assemble(spec, binary, out, name, mtime):
    """Writes the OCI image layout archive `out`; returns the manifest descriptor."""
    created = rfc3339(mtime)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out) or ".") as layout:
        blobs = os.path.join(layout, "blobs", "sha256")
        os.makedirs(blobs)
        base, base_diff = write_layer(base_layer(binary), blobs, mtime)
        app, app_diff = write_layer(app_layer(binary, spec), blobs, mtime)
        b = spec["binary"]
        config = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "User": spec["user"],
                "ExposedPorts": {port: {} for port in spec["ports"]},
                "Env": BASE_ENV,
                "Entrypoint": spec["entrypoint"],
                "Cmd": spec["cmd"],
                "WorkingDir": BASE_WORKDIR,
                "Labels": spec["labels"],
            },
            "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]},
            "history": [
                {"created": created, "created_by": f"hack/image/oci.py: the part of {BASE_IMAGE} "
                 "the binary uses, from this Debian 12 machine"},
                {"created": created, "created_by": f"COPY --chown={b['uid']}:{b['gid']} "
                 f"--chmod={b['mode']:04o} node-agent-webhook {b['path']}"},
            ],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": write_json_blob(config, blobs, MEDIA_CONFIG),
            "layers": [base, app],
        }
        descriptor = write_json_blob(manifest, blobs, MEDIA_MANIFEST)
        descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
        # ref.name as given (what skopeo and go-containerregistry select by); containerd's own
        # annotation is the full reference, which `ctr images import` stores under as it is.
        descriptor["annotations"] = {
            "org.opencontainers.image.ref.name": name,
            "io.containerd.image.name": full_reference(name),
        }
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [descriptor]}
        files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                 ("index.json", json.dumps(index, sort_keys=True, indent=2).encode() + b"\n")]
        entries = [Entry(p, "file", 0o644, data=d) for p, d in files]
        entries += [Entry("blobs/sha256/" + f, "file", 0o644, source=os.path.join(blobs, f))
                    for f in os.listdir(blobs)]
        tmp = out + ".tmp"
        with open(tmp, "wb") as sink:
            write_tar(with_parents(entries), sink, mtime)
        os.replace(tmp, out)
    return descriptor


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", required=True, help="the image reference, e.g. node-agent-webhook:latest")
    parser.add_argument("--source-date-epoch", type=int, required=True)
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    opts = parser.parse_args()
    build_args = dict(a.partition("=")[::2] for a in opts.build_arg)
    try:
        with open(opts.dockerfile) as f:
            spec = final_stage(f.read(), build_args)
    except DockerfileError as err:
        raise SystemExit(f"oci: {opts.dockerfile}: {err}")
    descriptor = assemble(spec, opts.binary, opts.out, opts.name, opts.source_date_epoch)
    print(descriptor["digest"])


if __name__ == "__main__":
    sys.exit(main())
