//! The image without Docker (`hack/image/build.sh`, `make image`) against the Dockerfile.
//!
//! The script packages a prebuilt binary here (the debug one, stripped as the Dockerfile's
//! release build is: no release build in a test) into `target/tmp/image`, and this file reads
//! the OCI archive it writes with its own tar reader: the config field by field against the
//! Dockerfile's final stage (parsed here, independently of the script's Python parser), the
//! layers for the binary, the `nonroot` user and every library the binary's dynamic section
//! names, and the binary run from the layers alone: in a chroot, as the image's user (a user
//! namespace maps it), answering an admission review over TLS. A second build must give the
//! same bytes. `make image` adds what needs Go: go-containerregistry's and containerd's readers.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use object::read::elf::{ElfFile64, ProgramHeader};
use serde_json::Value;
use support::{run, BINARY};

/// 2023-11-14T22:13:20Z: the build's SOURCE_DATE_EPOCH, so BUILD_DATE and every mtime are known.
const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";
const ARCHIVE: &str = "node-agent-webhook.oci.tar";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile's final stage
// ---------------------------------------------------------------------------------------------

/// What the Dockerfile's final stage declares, as the image config must carry it.
#[derive(Debug)]
struct Declared {
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    ports: BTreeSet<String>,
    labels: BTreeMap<String, String>,
    /// The COPY destination of the binary.
    binary: String,
}

/// Instructions with continuations joined and comments dropped, as (KEYWORD, arguments).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// Words split on blanks, with double-quoted parts unquoted (`\"` and `\\` escapes).
fn words(text: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "unterminated quote in {text:?}");
    if started {
        out.push(word);
    }
    out
}

/// `${NAME}` and `$NAME` replaced by the stage's ARG values.
fn expand(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => braced.split_once('}').expect("closing brace"),
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(args.get(name).unwrap_or_else(|| panic!("${name} is no ARG of the final stage")));
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not the exec (JSON) form: {text}: {e}"))
}

/// The final stage of `text`, each ARG taking `build_args`' value when given, else its default.
fn final_stage(text: &str, build_args: &BTreeMap<&str, String>) -> Declared {
    let all = instructions(text);
    let last = all.iter().rposition(|(k, _)| k == "FROM").expect("a FROM");
    let mut args = BTreeMap::new();
    let mut declared = Declared {
        user: String::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        ports: BTreeSet::new(),
        labels: BTreeMap::new(),
        binary: String::new(),
    };
    for (keyword, rest) in &all[last + 1..] {
        match keyword.as_str() {
            "ARG" => {
                for word in words(rest) {
                    let (name, default) = word.split_once('=').unwrap_or((&word, ""));
                    let value = build_args.get(name).cloned().unwrap_or_else(|| default.to_owned());
                    args.insert(name.to_owned(), value);
                }
            }
            "LABEL" => {
                for word in words(rest) {
                    let (key, value) = word.split_once('=').expect("LABEL key=value");
                    declared.labels.insert(expand(key, &args), expand(value, &args));
                }
            }
            "USER" => declared.user = expand(rest, &args),
            "EXPOSE" => declared.ports.extend(words(rest).iter().map(|p| {
                let port = expand(p, &args);
                if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                }
            })),
            "ENTRYPOINT" => declared.entrypoint = json_array(rest),
            "CMD" => declared.cmd = json_array(rest),
            "COPY" => declared.binary = words(rest).last().expect("a COPY destination").clone(),
            other => panic!("{other} in the final stage: tests/image.rs does not compare it yet"),
        }
    }
    declared
}

/// Every field where the image config differs from the Dockerfile, in words.
fn drift(declared: &Declared, config: &Value) -> Vec<String> {
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let keys =
        |v: &Value| -> BTreeSet<String> { v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default() };
    let labels: BTreeMap<String, String> = c["Labels"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("<not a string>").to_owned())).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut differ = |field: &str, image: String, dockerfile: String| {
        if image != dockerfile {
            out.push(format!("{field}: the image has {image}, the Dockerfile {dockerfile}"));
        }
    };
    differ("User", format!("{:?}", c["User"].as_str()), format!("{:?}", Some(declared.user.as_str())));
    differ("Entrypoint", format!("{:?}", strings(&c["Entrypoint"])), format!("{:?}", declared.entrypoint));
    differ("Cmd", format!("{:?}", strings(&c["Cmd"])), format!("{:?}", declared.cmd));
    differ("ExposedPorts", format!("{:?}", keys(&c["ExposedPorts"])), format!("{:?}", declared.ports));
    for key in labels.keys().chain(declared.labels.keys()).collect::<BTreeSet<_>>() {
        differ(&format!("Labels[{key}]"), format!("{:?}", labels.get(key)), format!("{:?}", declared.labels.get(key)));
    }
    differ(
        "Entrypoint[0] (COPY's destination)",
        format!("{:?}", strings(&c["Entrypoint"]).first()),
        format!("{:?}", Some(&declared.binary)),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// The archive
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TarEntry {
    path: String,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    link: String,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).expect("octal field").trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        0
    } else {
        u64::from_str_radix(text, 8).unwrap_or_else(|e| panic!("octal {text:?}: {e}"))
    }
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).expect("UTF-8 name")
}

/// The entries of a ustar archive (what the script writes: no PAX or GNU extensions).
fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|&b| b != 0) {
        let h = &bytes[at..at + 512];
        assert_eq!(&h[257..263], b"ustar\0", "a ustar header at {at}");
        let (name, prefix) = (c_string(&h[0..100]), c_string(&h[345..500]));
        let size = usize::try_from(octal(&h[124..136])).expect("size");
        let data = bytes[at + 512..at + 512 + size].to_vec();
        out.push(TarEntry {
            path: if prefix.is_empty() { name } else { format!("{prefix}/{name}") }.trim_end_matches('/').to_owned(),
            kind: h[156],
            mode: u32::try_from(octal(&h[100..108])).expect("mode"),
            uid: u32::try_from(octal(&h[108..116])).expect("uid"),
            gid: u32::try_from(octal(&h[116..124])).expect("gid"),
            mtime: octal(&h[136..148]),
            link: c_string(&h[157..257]),
            data,
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("layer.gz");
    std::fs::write(&path, bytes).expect("write layer");
    run(Command::new("gzip").arg("-dc").arg(&path)).stdout
}

/// The archive as a registry client reads it: the index's one manifest, its config and layers.
struct Image {
    index: Value,
    config: Value,
    /// Each layer's entries, in order.
    layers: Vec<Vec<TarEntry>>,
    /// Every entry of the outer archive, for the mtimes.
    outer: Vec<TarEntry>,
}

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The blob a descriptor names, checked against its digest and size.
fn blob<'a>(outer: &'a [TarEntry], descriptor: &Value) -> &'a [u8] {
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    let entry = outer.iter().find(|e| e.path == format!("blobs/sha256/{hex}")).expect("the blob is in the archive");
    assert_eq!(sha256(&entry.data), hex, "the blob's content has its name's digest");
    assert_eq!(descriptor["size"].as_u64(), Some(entry.data.len() as u64), "{digest}: size");
    &entry.data
}

fn read_image(archive: &Path) -> Image {
    let outer = read_tar(&std::fs::read(archive).expect("archive"));
    let file = |path: &str| -> Value {
        let entry = outer.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{path} in the archive"));
        serde_json::from_slice(&entry.data).expect("JSON")
    };
    assert_eq!(file("oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = file("index.json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image in the index");
    let manifest: Value = serde_json::from_slice(blob(&outer, &manifests[0])).expect("manifest");
    let config: Value = serde_json::from_slice(blob(&outer, &manifest["config"])).expect("config");
    let layers = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().expect("diff_ids"))
        .map(|(layer, diff_id)| {
            assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
            let tar = gunzip(blob(&outer, layer));
            assert_eq!(Some(format!("sha256:{}", sha256(&tar)).as_str()), diff_id.as_str(), "the layer's diff ID");
            read_tar(&tar)
        })
        .collect();
    Image { index, config, layers, outer }
}

/// The image's filesystem: every layer's entries, later ones over earlier ones.
fn flattened(image: &Image) -> BTreeMap<String, TarEntry> {
    image.layers.iter().flatten().map(|e| (e.path.clone(), e.clone())).collect()
}

/// Writes the flattened filesystem under `root` with its modes; every file is owned by whoever
/// runs the test, which `in_image` maps to the image's user.
fn unpack(files: &BTreeMap<String, TarEntry>, root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (path, e) in files {
        let at = root.join(path);
        match e.kind {
            b'5' => std::fs::create_dir_all(&at).expect("mkdir"),
            b'2' => std::os::unix::fs::symlink(&e.link, &at).expect("symlink"),
            b'0' => std::fs::write(&at, &e.data).expect("write"),
            other => panic!("{path}: tar type {}", other as char),
        }
    }
    for (path, e) in files.iter().filter(|(_, e)| e.kind != b'2') {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(e.mode)).expect("chmod");
    }
}

/// Resolves `path` inside the image as the loader would in it: symlinks followed within `files`.
fn resolve<'a>(files: &'a BTreeMap<String, TarEntry>, path: &str) -> Option<&'a TarEntry> {
    let mut path = path.trim_start_matches('/').to_owned();
    for _ in 0..8 {
        let entry = files.get(&path)?;
        if entry.kind != b'2' {
            return Some(entry);
        }
        path = if entry.link.starts_with('/') {
            entry.link.trim_start_matches('/').to_owned()
        } else {
            Path::new(&path).parent().map_or(PathBuf::new(), Path::to_path_buf).join(&entry.link).display().to_string()
        };
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The build
// ---------------------------------------------------------------------------------------------

/// The arguments `make image` gives the Dockerfile's ARGs, as the script derives them.
fn build_args() -> BTreeMap<&'static str, String> {
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo()).output().ok();
    let head = head
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    BTreeMap::from([
        ("VERSION", env!("CARGO_PKG_VERSION").to_owned()),
        ("VCS_REF", head),
        ("BUILD_DATE", EPOCH_RFC3339.to_owned()),
    ])
}

/// Runs hack/image/build.sh on `binary` into `out`; returns its stdout (path, digest).
fn build(binary: &Path, out: &Path) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack/image/build.sh"))
        .env("BINARY", binary)
        .env("OUT_DIR", out)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env("VALIDATE", "0");
    for name in ["IMG", "VERSION", "VCS_REF", "BUILD_DATE", "SOURCE_URL"] {
        cmd.env_remove(name);
    }
    String::from_utf8(run(&mut cmd).stdout).expect("UTF-8")
}

struct Built {
    /// `target/tmp/image`, made anew by each run (a static is never dropped, so no TempDir).
    dir: PathBuf,
    /// The flattened layers written out, for the chroot.
    root: PathBuf,
    /// The binary given to the script.
    binary: PathBuf,
    stdout: String,
    image: Image,
    files: BTreeMap<String, TarEntry>,
    declared: Declared,
}

/// One build for all the tests: the debug binary stripped of symbols, as the Dockerfile's
/// release build strips its own (35 of 214 MB to pack and gzip).
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the last run's files");
        }
        std::fs::create_dir_all(&dir).expect("mkdir");
        let binary = dir.join("node-agent-webhook");
        run(Command::new("strip").arg("--strip-all").arg("-o").arg(&binary).arg(BINARY));
        let stdout = build(&binary, &dir.join("a"));
        let image = read_image(&dir.join("a").join(ARCHIVE));
        let files = flattened(&image);
        let root = dir.join("rootfs");
        unpack(&files, &root);
        let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
        let declared = final_stage(&dockerfile, &build_args());
        Built { dir, root, binary, stdout, image, files, declared }
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_image_config_is_the_dockerfiles_final_stage() {
    let b = built();
    let found = drift(&b.declared, &b.image.config);
    assert!(found.is_empty(), "the image drifted from the Dockerfile:\n{}", found.join("\n"));
    // Inherited from distroless cc-debian12:nonroot: the working directory is the user's home.
    let c = &b.image.config["config"];
    assert_eq!(c["WorkingDir"], "/home/nonroot");
    let path = c["Env"].as_array().expect("Env").iter().filter_map(Value::as_str).find_map(|e| e.strip_prefix("PATH="));
    assert!(path.is_some_and(|p| p.split(':').any(|d| d == "/usr/local/bin")), "PATH holds the binary's dir: {path:?}");
    assert_eq!(b.image.config["created"], EPOCH_RFC3339);
    assert_eq!(
        (b.image.config["os"].as_str(), b.image.config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
}

#[test]
fn a_dockerfile_that_moves_away_from_the_image_is_caught_field_by_field() {
    let b = built();
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let cases = [
        ("EXPOSE 8443 9090", "EXPOSE 8443 9091", "ExposedPorts"),
        ("USER 65532:65532", "USER 65532", "User"),
        (r#"CMD ["serve"]"#, r#"CMD ["serve", "--log-format", "text"]"#, "Cmd"),
        ("/usr/local/bin/node-agent-webhook\"]", "/bin/node-agent-webhook\"]", "Entrypoint"),
        ("licenses=\"Apache-2.0\"", "licenses=\"MIT\"", "Labels[org.opencontainers.image.licenses]"),
        ("ARG VCS_REF=unknown", "ARG VCS_REF=unknown\nARG RELEASE=1", "no drift: an ARG alone"),
    ];
    for (from, to, field) in cases {
        assert!(dockerfile.contains(from), "the Dockerfile no longer has {from:?}: update this table");
        let moved = final_stage(&dockerfile.replacen(from, to, 1), &build_args());
        let found = drift(&moved, &b.image.config);
        if field.starts_with("no drift") {
            assert!(found.is_empty(), "{field}: {found:?}");
        } else {
            assert!(found.iter().any(|f| f.starts_with(field)), "{from} -> {to} is not reported as {field}: {found:?}");
        }
    }
    // A build argument reaches its label.
    let mut args = build_args();
    args.insert("VERSION", "9.9.9".to_owned());
    let found = drift(&final_stage(&dockerfile, &args), &b.image.config);
    assert_eq!(
        found,
        [r#"Labels[org.opencontainers.image.version]: the image has Some("0.1.0"), the Dockerfile Some("9.9.9")"#
            .replace("0.1.0", env!("CARGO_PKG_VERSION"))]
    );
}

#[test]
fn the_layers_hold_the_binary_the_nonroot_user_and_the_libraries_the_binary_needs() {
    let b = built();
    let entrypoint = &b.declared.entrypoint[0];
    let binary = resolve(&b.files, entrypoint).unwrap_or_else(|| panic!("{entrypoint} is not in the image"));
    assert_eq!((binary.kind, binary.mode, binary.uid, binary.gid), (b'0', 0o755, 0, 0), "{entrypoint}");
    assert!(binary.data == std::fs::read(&b.binary).expect("binary"), "{entrypoint} is the binary given");

    // USER uid:gid has a passwd entry (its home the working directory) and a group.
    let (uid, gid) = b.declared.user.split_once(':').expect("USER uid:gid");
    let passwd = String::from_utf8(resolve(&b.files, "/etc/passwd").expect("/etc/passwd").data.clone()).expect("UTF-8");
    let user: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[2] == uid)
        .unwrap_or_else(|| panic!("no passwd entry for {uid}:\n{passwd}"));
    assert_eq!((user[0], user[3], user[5]), ("nonroot", gid, "/home/nonroot"), "{user:?}");
    assert_eq!(b.image.config["config"]["WorkingDir"], user[5], "the working directory is the user's home");
    let group = String::from_utf8(resolve(&b.files, "/etc/group").expect("/etc/group").data.clone()).expect("UTF-8");
    assert!(group.lines().any(|l| l.split(':').nth(2) == Some(gid)), "no group {gid}:\n{group}");
    let home = resolve(&b.files, user[5]).expect("the home directory");
    assert_eq!(
        (home.kind, home.mode, home.uid.to_string(), home.gid.to_string()),
        (b'5', 0o700, uid.into(), gid.into())
    );
    let tmp = resolve(&b.files, "/tmp").expect("/tmp");
    assert_eq!((tmp.kind, tmp.mode), (b'5', 0o1777));
    let certs = resolve(&b.files, "/etc/ssl/certs/ca-certificates.crt").expect("the CA bundle");
    assert!(String::from_utf8_lossy(&certs.data).contains("-----BEGIN CERTIFICATE-----"), "a PEM CA bundle");

    // The loader the binary names, and every DT_NEEDED library in a directory it searches.
    let elf = ElfFile64::<object::Endianness>::parse(binary.data.as_slice()).expect("an ELF binary");
    let endian = elf.endian();
    let interpreter = elf
        .elf_program_headers()
        .iter()
        .find_map(|ph| ph.interpreter(endian, binary.data.as_slice()).expect("PT_INTERP"))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .expect("a dynamically linked binary");
    assert!(resolve(&b.files, &interpreter).is_some_and(|e| e.kind == b'0'), "the loader {interpreter} is missing");
    let dynamic = elf.elf_dynamic_table().expect("dynamic table");
    let needed: Vec<String> = dynamic
        .iter()
        .filter(|d| d.tag == object::elf::DT_NEEDED)
        .map(|d| String::from_utf8_lossy(dynamic.string(d).expect("DT_NEEDED name")).into_owned())
        .collect();
    assert!(needed.iter().any(|n| n == "libc.so.6"), "read the dynamic section: {needed:?}");
    // glibc's loader on Debian amd64 searches these without an ld.so.cache (none in the image).
    let searched = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
    for name in &needed {
        let found = searched.iter().find_map(|dir| resolve(&b.files, &format!("{dir}/{name}")));
        assert!(found.is_some_and(|e| e.kind == b'0'), "{name} (DT_NEEDED) is in none of {searched:?}");
    }
}

/// A command run as the image runs it: in a chroot of its layers, as the Dockerfile's USER
/// (a user namespace maps this test's user to it; no privilege needed), with the image's Env.
fn in_image(b: &Built, args: &[&str]) -> Command {
    let (uid, gid) = b.declared.user.split_once(':').expect("USER uid:gid");
    let mut cmd = Command::new("unshare");
    cmd.args(["--map-user", uid, "--map-group", gid, "--keep-caps", "chroot"]).arg(&b.root);
    cmd.arg(&b.declared.entrypoint[0]).args(args).env_clear();
    for pair in b.image.config["config"]["Env"].as_array().expect("Env").iter().filter_map(Value::as_str) {
        let (name, value) = pair.split_once('=').expect("NAME=value");
        cmd.env(name, value);
    }
    cmd
}

#[test]
fn the_binary_runs_on_the_image_layers_alone() {
    let b = built();
    // No file of this machine is in reach in the chroot: the loader, the libraries and
    // whatever else the binary opens come from the image.
    let out = run(&mut in_image(b, &["--version"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("node-agent-webhook {}\n", env!("CARGO_PKG_VERSION")));
    // Without HOME (the Env has none) and without a config, `serve` looks for a kubeconfig in the
    // user's home, which glibc finds through nsswitch.conf's "compat" module and /etc/passwd: the
    // error names /home/nonroot only when both are in the image.
    let out = in_image(b, &b.declared.cmd.iter().map(String::as_str).collect::<Vec<_>>())
        .args(["--tls-cert", "/tmp/tls.crt", "--tls-key", "/tmp/tls.key"])
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("/home/nonroot/.kube/config"), "serve: {stderr}");
}

#[test]
fn the_image_answers_an_admission_review_over_tls_from_its_layers_alone() {
    let b = built();
    let certs = support::Certs::new();
    // A directory of its own under the image's /tmp, readable by the mapped user.
    let dir = tempfile::tempdir_in(b.root.join("tmp")).expect("dir in the image's /tmp");
    for name in ["tls.crt", "tls.key"] {
        std::fs::copy(certs.path(name), dir.path().join(name)).expect("copy");
    }
    std::fs::write(dir.path().join("config.json"), "{}").expect("config");
    let inside = |name: &str| format!("/tmp/{}/{name}", dir.path().file_name().expect("name").to_string_lossy());
    let (port, metrics_port) = (support::free_port(), support::free_port());
    let (bind, metrics_bind) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{metrics_port}"));
    let mut args: Vec<&str> = b.declared.cmd.iter().map(String::as_str).collect();
    let (cert, key, config) = (inside("tls.crt"), inside("tls.key"), inside("config.json"));
    args.extend(["--tls-cert", &cert, "--tls-key", &key, "--config-file", &config]);
    args.extend(["--bind", &bind, "--metrics-bind", &metrics_bind]);
    let child = in_image(b, &args).stdout(std::process::Stdio::null()).spawn().expect("serve in the image");
    let server = support::Server { child, port, metrics_port, logs: Default::default() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get_admin("/readyz").map(|(code, _)| code) != Ok(200) {
        assert!(Instant::now() < deadline, "the server in the image is not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let configmap = support::repo_json("examples/configmaps/03-docs-complete-example-thresholdInGB.json");
    let client = support::client(&certs.ca_pem);
    let answer = support::review(
        &client,
        &server.url("/validate"),
        &support::configmap_review("CREATE", Some(&configmap), None),
    );
    assert_eq!((&answer["allowed"], &answer["status"]["code"]), (&Value::Bool(false), &Value::from(422)), "{answer}");
    assert!(answer["status"]["message"].as_str().is_some_and(|m| m.contains("thresholdInGB")), "{answer}");
}

#[test]
fn two_builds_of_the_same_inputs_are_the_same_bytes() {
    let b = built();
    let again = build(&b.binary, &b.dir.join("b"));
    assert_eq!(again.lines().last(), b.stdout.lines().last(), "the digest printed");
    let first = std::fs::read(b.dir.join("a").join(ARCHIVE)).expect("first");
    let second = std::fs::read(b.dir.join("b").join(ARCHIVE)).expect("second");
    assert!(first == second, "the archives differ");
    // What the script prints: the archive's path and the index's manifest digest.
    let digest = b.image.index["manifests"][0]["digest"].as_str().expect("digest");
    assert!(b.stdout.ends_with(&format!("{ARCHIVE}\n{digest}\n")), "{}", b.stdout);
    assert!(b.image.outer.iter().chain(b.image.layers.iter().flatten()).all(|e| e.mtime == EPOCH), "every mtime");
}

#[test]
fn the_index_names_the_image_for_oci_tools_and_for_containerd() {
    let annotations = &built().image.index["manifests"][0]["annotations"];
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "node-agent-webhook:latest");
    // The name the kubelet asks containerd's CRI for when a pod says node-agent-webhook:latest.
    assert_eq!(annotations["io.containerd.image.name"], "docker.io/library/node-agent-webhook:latest");
}

#[test]
fn the_script_builds_the_binary_as_the_dockerfiles_build_stage() {
    let script = std::fs::read_to_string(repo().join("hack/image/build.sh")).expect("build.sh");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let command = |line: &str| -> Option<String> {
        let at = line.find("hack/pgo/build.sh")?;
        let env = line[..at].split_whitespace().filter(|w| w.starts_with("CARGO_PROFILE_"));
        let args = line[at..].split_whitespace().take_while(|w| w.starts_with("--") || !w.contains('&'));
        Some(env.chain(args).collect::<Vec<_>>().join(" "))
    };
    let ours: Vec<String> = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| command(&l.replace("nice -n 10 ", "")))
        .collect();
    let theirs: Vec<String> =
        instructions(&dockerfile).iter().filter(|(k, _)| k == "RUN").filter_map(|(_, rest)| command(rest)).collect();
    assert_eq!(ours.len(), 1, "one release build in build.sh: {ours:?}");
    assert_eq!(ours, theirs);
}

#[test]
fn the_script_refuses_a_final_stage_it_does_not_reproduce() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("CMD [\"serve\"]", "CMD [\"serve\"]\nENV RUST_LOG=debug", "ENV in the final stage"),
        ("CMD [\"serve\"]", "CMD serve", "CMD must be the JSON (exec) form"),
        ("FROM gcr.io/distroless/cc-debian12:nonroot", "FROM gcr.io/distroless/static-debian12", "stands in for"),
    ];
    for (from, to, message) in cases {
        assert!(dockerfile.contains(from), "the Dockerfile no longer has {from:?}: update this table");
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, dockerfile.replacen(from, to, 1)).expect("write");
        let out = Command::new("python3")
            .arg(repo().join("hack/image/oci.py"))
            .arg("--dockerfile")
            .arg(&path)
            .args(["--binary", BINARY, "--name", "x", "--source-date-epoch", "0", "--out"])
            .arg(dir.path().join(ARCHIVE))
            .output()
            .expect("run oci.py");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{to}: {stderr}");
        assert!(!dir.path().join(ARCHIVE).exists(), "{to}: no archive written");
    }
}
