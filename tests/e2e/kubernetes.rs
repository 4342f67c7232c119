//! The Kubernetes manifests of `deploy/kubernetes/` run as they say. Each test reads a
//! workload's manifest (the siemflow container's args, env, ports, probes, volume mounts,
//! `terminationGracePeriodSeconds`) and the ConfigMap it mounts, lays out the pod's
//! files in a temp dir as the kubelet does (ConfigMap and Secret volumes with their
//! `..data` symlinks; emptyDirs and the PVC as empty folders), and starts the binary
//! with exactly those args and env. What differs from a pod, and only that: the paths
//! are re-rooted under the temp dir, the container ports become free loopback-reachable
//! ports, and the SIEM (and Microsoft) endpoints are pointed at the simulators.
//!
//! Then: `/health` answers 200 from its first answer; `/ready` is 503 while the SIEM
//! cannot be reached, 200 once it can, 503 again when it stops (and `/health` stays 200:
//! an outage must not restart the pod); SIGTERM drains and exits 0 within the
//! manifest's grace period; and nothing was written outside the writable volumes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;
use siemflow_simulator::splunk_hec::{HecToken, SplunkHecConfig, SplunkHecSimulator};
use siemflow_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config};

use crate::harness::{Pipeline, binary, free_port, http_status, start_m365, wait_for};

const HEC_TOKEN: &str = "0b8e7f36-2c1d-4a5e-9f70-8d6c5b4a3e21";

/// How long each step may take: the manifests probe the SIEM every 10 s.
const STEP: Duration = Duration::from_secs(90);

/// The folder of the plain manifests.
fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of a manifest file.
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).expect("read manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Every YAML document of every file in a role's folder.
fn role_documents(role: &str) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests().join(role))
        .expect("the role's folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.iter().flat_map(|file| documents(file)).collect()
}

/// A YAML string's text (empty for anything else).
fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The object of `kind` named `name` among the role's documents.
fn object<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| text(&d["kind"]) == kind && text(&d["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifests"))
}

/// The siemflow pod of a role as the test runs it.
struct Pod {
    /// The pod's `/`: every mount under it.
    root: tempfile::TempDir,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    grace: Duration,
    /// The manifest's container port (by name) and the local port that stands for it.
    ports: BTreeMap<String, (u16, u16)>,
    /// Mount paths the pod may write to (emptyDir, PVC).
    writable: Vec<String>,
    /// The mounted config files, re-rooted, for `validate`.
    config: PathBuf,
}

impl Pod {
    /// Reads the workload of `role`/`file`, checks its probes against the config it
    /// mounts and lays out its files. `secrets` gives each Secret key's content; `env`
    /// replaces the values of variables the manifest sets, `add` sets ones the config
    /// reads with a default (`${NAME:-...}`) and the manifest leaves alone.
    fn new(
        role: &str,
        file: &str,
        secrets: &[(&str, &str)],
        env: &[(&str, String)],
        add: &[(&str, String)],
    ) -> Pod {
        let objects = role_documents(role);
        let workloads = documents(&manifests().join(role).join(file));
        let [workload] = workloads.as_slice() else {
            panic!("{role}/{file}: one workload per file");
        };
        let name = text(&workload["metadata"]["name"]);
        let spec = &workload["spec"]["template"]["spec"];
        let container = spec["containers"]
            .as_sequence()
            .into_iter()
            .chain(spec["initContainers"].as_sequence())
            .flatten()
            .find(|c| text(&c["name"]) == "siemflow")
            .expect("a container named siemflow");
        let grace = spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds set");

        let ports: BTreeMap<String, (u16, u16)> = container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(|p| {
                let port = p["containerPort"].as_u64().expect("containerPort") as u16;
                (text(&p["name"]).to_string(), (port, free_port()))
            })
            .collect();
        for (probe, path) in [
            ("startupProbe", "/health"),
            ("livenessProbe", "/health"),
            ("readinessProbe", "/ready"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(text(&get["path"]), path, "{name} {probe}");
            assert_eq!(text(&get["port"]), "api", "{name} {probe} port");
        }

        let root = tempfile::tempdir().expect("tempdir");
        let mounts: Vec<(String, String)> = container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                (
                    text(&m["name"]).to_string(),
                    text(&m["mountPath"]).to_string(),
                )
            })
            .collect();
        let read_only: Vec<&str> = container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .filter(|m| m["readOnly"].as_bool() == Some(true))
            .map(|m| text(&m["mountPath"]))
            .collect();
        let reroot = |text: &str| reroot(text, root.path(), &mounts);
        let mut writable = Vec::new();
        let mut config_text = None;
        let claims = workload["spec"]["volumeClaimTemplates"].as_sequence();
        for (volume_name, path) in &mounts {
            let at = root.path().join(path.trim_start_matches('/'));
            let is_claim = claims
                .into_iter()
                .flatten()
                .any(|c| text(&c["metadata"]["name"]) == volume_name);
            let volume = spec["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| text(&v["name"]) == volume_name);
            match volume {
                _ if is_claim => {
                    std::fs::create_dir_all(&at).expect("mkdir");
                    writable.push(path.clone());
                }
                Some(v) if !v["emptyDir"].is_null() => {
                    std::fs::create_dir_all(&at).expect("mkdir");
                    if !read_only.contains(&path.as_str()) {
                        writable.push(path.clone());
                    }
                }
                Some(v) if !v["configMap"].is_null() => {
                    let map = object(&objects, "ConfigMap", text(&v["configMap"]["name"]));
                    let files: Vec<(String, String)> = map["data"]
                        .as_mapping()
                        .expect("ConfigMap data")
                        .iter()
                        .map(|(k, v)| (text(k).to_string(), text(v).to_string()))
                        .collect();
                    let pipeline = files
                        .iter()
                        .find(|(key, _)| key == "pipeline.toml")
                        .expect("pipeline.toml in the ConfigMap");
                    config_text = Some(pipeline.1.clone());
                    // The container sees the ConfigMap as it is; only the paths and
                    // ports in it are the test's.
                    let mut content = reroot(&pipeline.1);
                    for (port, local) in ports.values() {
                        content = content
                            .replace(&format!("0.0.0.0:{port}\""), &format!("0.0.0.0:{local}\""));
                    }
                    atomic_volume(&at, &[("pipeline.toml".to_string(), content)]);
                }
                Some(v) if !v["secret"].is_null() => {
                    let items = v["secret"]["items"].as_sequence().expect("secret items");
                    let files: Vec<(String, String)> = items
                        .iter()
                        .map(|item| {
                            let key = text(&item["key"]);
                            let value = secrets
                                .iter()
                                .find(|(k, _)| *k == key)
                                .unwrap_or_else(|| panic!("the test has no value for {key}"));
                            (text(&item["path"]).to_string(), format!("{}\n", value.1))
                        })
                        .collect();
                    atomic_volume(&at, &files);
                }
                _ => panic!("volume {volume_name} of {name}: no kind the test knows"),
            }
        }

        // The config's API port is the one the probes ask, and the drain ends in time.
        let config_text = config_text.expect("a ConfigMap with pipeline.toml");
        let config: toml::Value = toml::from_str(&config_text).expect("pipeline.toml parses");
        let api_port = ports.get("api").expect("a port named api").0;
        assert_eq!(
            config["api"]["address"].as_str(),
            Some(format!("0.0.0.0:{api_port}").as_str()),
            "[api] address must be the probes' port on every interface"
        );
        let shutdown = config
            .get("shutdown_timeout")
            .and_then(|v| v.as_str())
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse::<u64>().ok())
            .expect("shutdown_timeout in seconds");
        assert!(
            grace > shutdown,
            "terminationGracePeriodSeconds {grace} must exceed shutdown_timeout {shutdown}s"
        );

        let args: Vec<String> = container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| reroot(text(a)))
            .collect();
        let mut variables: BTreeMap<String, String> = container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| (text(&e["name"]).to_string(), text(&e["value"]).to_string()))
            .collect();
        for (name, value) in env {
            assert!(
                variables.contains_key(*name),
                "the manifest no longer sets {name}"
            );
            variables.insert(name.to_string(), value.clone());
        }
        for (name, value) in add {
            assert!(
                config_text.contains(&format!("${{{name}:-")),
                "the config no longer reads {name}"
            );
            variables.insert(name.to_string(), value.clone());
        }
        // The pod's /tmp is its emptyDir.
        variables.insert(
            "TMPDIR".into(),
            root.path().join("tmp").to_string_lossy().into_owned(),
        );
        let config = root.path().join("etc/siemflow/pipeline.toml");
        Pod {
            root,
            args,
            env: variables,
            grace: Duration::from_secs(grace),
            ports,
            writable,
            config,
        }
    }

    /// The local port standing for the manifest's container port `name`.
    fn port(&self, name: &str) -> u16 {
        self.ports.get(name).expect("port").1
    }

    fn api(&self) -> String {
        format!("127.0.0.1:{}", self.port("api"))
    }

    /// The binary with the pod's env only, in its root (the image's working directory).
    fn command(&self) -> Command {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .envs(&self.env)
            .current_dir(self.root.path());
        command
    }

    /// Starts the container's command.
    fn start(&self) -> Pipeline {
        let stderr = self.root.path().join("stderr.log");
        let child = self
            .command()
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn siemflow");
        Pipeline::spawned(child, stderr)
    }

    /// Every file under the root outside the writable volumes, with its content.
    fn read_only_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let skip: Vec<PathBuf> = self
            .writable
            .iter()
            .map(|p| self.root.path().join(p.trim_start_matches('/')))
            .chain([self.root.path().join("stderr.log")])
            .collect();
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if skip.contains(&path) {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).expect("metadata");
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    files.insert(path.clone(), std::fs::read(&path).expect("read"));
                } else {
                    files.insert(path.clone(), Vec::new());
                }
            }
        }
        files
    }
}

/// `text` with every mount path (a whole path component) under `root`, in one pass.
fn reroot(text: &str, root: &Path, mounts: &[(String, String)]) -> String {
    let mut paths: Vec<&str> = mounts.iter().map(|(_, p)| p.as_str()).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = String::new();
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for path in &paths {
            if let Some(after) = rest.strip_prefix(path)
                && after
                    .chars()
                    .next()
                    .is_none_or(|c| c == '/' || c == '"' || c.is_whitespace())
            {
                out.push_str(&root.join(path.trim_start_matches('/')).to_string_lossy());
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

/// A ConfigMap or Secret volume as the kubelet's atomic writer lays it out: the files in
/// a timestamped folder, `..data` linking to it, and each name a link through `..data`.
fn atomic_volume(at: &Path, files: &[(String, String)]) {
    let stamp = "..2026_12_07_10_00_00.000000001";
    std::fs::create_dir_all(at.join(stamp)).expect("mkdir");
    for (name, content) in files {
        std::fs::write(at.join(stamp).join(name), content).expect("write");
        std::os::unix::fs::symlink(format!("..data/{name}"), at.join(name)).expect("symlink");
    }
    std::os::unix::fs::symlink(stamp, at.join("..data")).expect("symlink");
}

/// The SIEM endpoint a pod is given: the HEC simulator's port on loopback.
fn hec_endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Splunk's HEC simulator with the manifests' token, on `port`.
fn start_hec(runtime: &tokio::runtime::Runtime, port: u16) -> SplunkHecSimulator {
    let config = SplunkHecConfig {
        tokens: vec![HecToken {
            token: HEC_TOKEN.into(),
            ..HecToken::default()
        }],
        ..SplunkHecConfig::default()
    };
    runtime
        .block_on(SplunkHecSimulator::start(
            config,
            format!("127.0.0.1:{port}").parse().expect("address"),
        ))
        .expect("HEC simulator")
}

/// The probe flow every role must pass; `traffic` makes events flow to the running HEC
/// simulator (or checks that they do), before the outage and after it.
fn probes_and_drain(pod: &Pod, hec_port: u16, mut traffic: impl FnMut(&SplunkHecSimulator, usize)) {
    let before = pod.read_only_files();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // Splunk is not there yet.
    let mut process = pod.start();
    let api = pod.api();
    let first = wait_for("the API to answer", STEP, || http_status(&api, "/health"));
    assert_eq!(first.0, 200, "the first /health answer: {first:?}");
    // Once the pipeline has started, the sink's healthcheck (pending, then failed) is
    // what keeps the pod unready.
    let (status, body) = wait_for("the pipeline to start", STEP, || {
        http_status(&api, "/ready").filter(|(_, body)| !body.contains("starting"))
    });
    assert_eq!(status, 503, "ready without a SIEM: {body}");
    assert!(body.contains("sink splunk: healthcheck"), "{body}");
    assert_eq!(
        http_status(&api, "/debug").map(|(s, _)| s),
        Some(404),
        "the API serves /health, /ready and /metrics only"
    );

    let hec = start_hec(&runtime, hec_port);
    wait_for("/ready 200 once Splunk answers", STEP, || {
        (http_status(&api, "/ready")?.0 == 200).then_some(())
    });
    traffic(&hec, 1);

    runtime.block_on(hec.stop());
    let reason = wait_for("/ready 503 once Splunk is gone", STEP, || {
        let (status, body) = http_status(&api, "/ready")?;
        (status == 503).then_some(body)
    });
    assert!(reason.contains("sink splunk"), "{reason}");
    assert_eq!(
        http_status(&api, "/health").map(|(s, _)| s),
        Some(200),
        "a SIEM outage must not fail liveness"
    );

    let hec = start_hec(&runtime, hec_port);
    wait_for("/ready 200 again", STEP, || {
        (http_status(&api, "/ready")?.0 == 200).then_some(())
    });
    traffic(&hec, 2);

    process.signal(libc::SIGTERM);
    let status = process.wait_exit(pod.grace);
    assert!(
        status.success(),
        "exit {status:?} after SIGTERM: {}",
        process.logs()
    );
    assert!(
        process.logs().contains("drained; exiting"),
        "{}",
        process.logs()
    );
    runtime.block_on(hec.stop());

    assert_eq!(
        pod.read_only_files(),
        before,
        "written outside the writable volumes"
    );
}

/// Each event Splunk indexed, as JSON text.
fn indexed_texts(hec: &SplunkHecSimulator) -> Vec<String> {
    hec.indexed().iter().map(|e| e.event.to_string()).collect()
}

#[test]
fn the_collector_statefulset_runs_as_its_manifest_says() {
    let world = M365Config {
        records_per_hour: 60,
        ..M365Config::default()
    };
    let (_m365_runtime, m365) = start_m365(world);
    let url = m365.base_url();
    let hec_port = free_port();
    let pod = Pod::new(
        "collector",
        "statefulset.yaml",
        &[
            ("m365-client-secret", DEFAULT_CLIENT_SECRET),
            ("splunk-hec-token", HEC_TOKEN),
        ],
        &[
            ("M365_TENANT_ID", DEFAULT_TENANT_ID.to_string()),
            ("M365_CLIENT_ID", DEFAULT_CLIENT_ID.to_string()),
            ("SPLUNK_HEC_ENDPOINT", hec_endpoint(hec_port)),
        ],
        &[("M365_API_URL", url.clone()), ("M365_LOGIN_URL", url)],
    );
    probes_and_drain(&pod, hec_port, |hec, _| {
        wait_for("audit records in Splunk", STEP, || {
            (!hec.indexed().is_empty()).then_some(())
        });
    });
}

#[test]
fn the_receiver_deployment_runs_as_its_manifest_says() {
    let hec_port = free_port();
    let pod = Pod::new(
        "receiver",
        "deployment.yaml",
        &[("splunk-hec-token", HEC_TOKEN)],
        &[("SPLUNK_HEC_ENDPOINT", hec_endpoint(hec_port))],
        &[],
    );
    let syslog = format!("127.0.0.1:{}", pod.port("syslog"));
    probes_and_drain(&pod, hec_port, |hec, round| {
        let marker = format!("kubernetes-receiver-round-{round}");
        let mut stream = TcpStream::connect(&syslog).expect("connect to the syslog port");
        writeln!(
            stream,
            "<86>1 2026-12-07T10:00:00Z app01 sshd 4242 - - {marker}"
        )
        .expect("send");
        drop(stream);
        wait_for("the syslog message in Splunk", STEP, || {
            indexed_texts(hec)
                .iter()
                .any(|e| e.contains(&marker))
                .then_some(())
        });
    });
}

#[test]
fn the_sidecar_configs_validate_in_their_pods_layout() {
    for file in ["deployment.yaml", "deployment-classic.yaml"] {
        let pod = Pod::new(
            "sidecar",
            file,
            &[("splunk-hec-token", HEC_TOKEN)],
            &[],
            &[],
        );
        let output = pod
            .command()
            .args(["validate", "--config"])
            .arg(&pod.config)
            .output()
            .expect("validate");
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_sigterm_as_soon_as_health_answers_still_drains_and_exits_0() {
    // A pod deleted while it starts: the kubelet's SIGTERM may come the moment the API
    // listens, before the pipeline is built. The image's default pipeline starts its
    // simulator in that window, which makes it wide.
    let ws = crate::harness::Workspace::new();
    let api = format!("127.0.0.1:{}", free_port());
    let stderr = ws.path("stderr.log");
    let child = Command::new(binary())
        .args(["run", "--log-format", "json", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.toml"))
        .env("SIEMFLOW_API", &api)
        .current_dir(ws.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn siemflow");
    let mut process = Pipeline::spawned(child, stderr);
    wait_for("the API to answer", STEP, || http_status(&api, "/health"));
    process.signal(libc::SIGTERM);
    let status = process.wait_exit(STEP);
    assert!(status.success(), "exit {status:?}: {}", process.logs());
}
