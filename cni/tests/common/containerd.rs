//! A real container runtime for the plugin's tests: containerd (Debian's
//! 1.6 with runc) inside a lab node, with its own config, root, state and
//! socket under the lab's work dir, driven through the CRI the way kubelet
//! drives it, running sandboxes of a pause image built here from a static
//! binary and imported with `ctr`.
//!
//! Everything containerd leaves on the host (shims, pause processes,
//! mounts, cgroups) is removed by [`Runtime`]'s `Drop`, also on failure.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusRequest, PortMapping, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest, VersionRequest,
};
use lab::{Lab, ProcId};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

/// The pause image the sandboxes run (never pulled: imported by the test).
pub const PAUSE_IMAGE: &str = "kubermesh.test/pause:1";
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// Build a tiny static pause binary and pack it as an OCI image layout
/// tarball; return the tarball's path.
pub fn build_pause_image(dir: &Path) -> PathBuf {
    let src = dir.join("pause.c");
    std::fs::write(
        &src,
        r#"#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, stop); signal(SIGTERM, stop); signal(SIGCHLD, reap);
    for (;;) pause();
}
"#,
    )
    .unwrap();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    sh(Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(rootfs.join("pause"))
        .arg(&src));

    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = dir.join("layer.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("pause"));
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = dir.join("blob.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let out = sh(Command::new("sha256sum").arg(&tmp));
        let digest = out.split_whitespace().next().unwrap().to_owned();
        std::fs::rename(&tmp, blobs.join(&digest)).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&std::fs::read(&layer).unwrap());
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": PAUSE_IMAGE, "org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tarball = dir.join("pause-oci.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&layout)
        .args(["oci-layout", "index.json", "blobs"]));
    tarball
}

/// Run a host command to success and return its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One containerd inside one lab node, and everything it owns on the host.
pub struct Runtime<'a> {
    lab: &'a Lab,
    node: String,
    dir: PathBuf,
    sock: PathBuf,
    proc: ProcId,
    cgroup_parent: String,
    tokio: tokio::runtime::Runtime,
}

impl<'a> Runtime<'a> {
    /// Configure and start containerd in `node` with `conflist` (the
    /// plugin under test, the reference plugins it chains from Debian's
    /// containernetworking-plugins), import the pause image.
    pub fn start(lab: &'a Lab, node: &str, conflist: &Value, image: &Path) -> Runtime<'a> {
        let dir = lab.work_dir().join(format!("containerd-{node}"));
        let (bin, conf) = (dir.join("cni-bin"), dir.join("cni-conf"));
        for d in [&dir, &bin, &conf] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::copy(super::PLUGIN, bin.join("meshfwd-cni")).unwrap();
        let reference: Vec<&str> = conflist["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["type"].as_str())
            .filter(|t| *t != "meshfwd-cni")
            .chain(["loopback"])
            .collect();
        for plugin in reference {
            std::fs::copy(Path::new("/usr/lib/cni").join(plugin), bin.join(plugin)).unwrap_or_else(
                |e| {
                    panic!(
                        "/usr/lib/cni/{plugin} (apt-get install containernetworking-plugins): {e}"
                    )
                },
            );
        }
        std::fs::write(conf.join("10-kubermesh.conflist"), conflist.to_string()).unwrap();
        let sock = dir.join("containerd.sock");
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
            sock = sock.display(),
            bin = bin.display(),
            conf = conf.display(),
        );
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let proc = lab
            .node(node)
            .spawn(
                "containerd",
                &["containerd", "--config", cfg.to_str().unwrap()],
            )
            .unwrap();
        let rt = Runtime {
            lab,
            node: node.to_owned(),
            cgroup_parent: format!("/kmtest-{}-{node}", std::process::id()),
            dir,
            sock,
            proc,
            tokio: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        rt.wait_ready();
        lab.node(node)
            .run(&[
                "ctr",
                "--address",
                rt.sock.to_str().unwrap(),
                "-n",
                "k8s.io",
                "images",
                "import",
                image.to_str().unwrap(),
            ])
            .expect("ctr images import");
        rt
    }

    /// Wait until the CRI answers (bounded).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let ok = self.tokio.block_on(async {
                let Ok(mut c) = self.client().await else {
                    return false;
                };
                c.version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .is_ok()
            });
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd in {} not ready: {}",
                    self.node,
                    self.lab.node(&self.node).log(self.proc)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn client(&self) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
        let sock = self.sock.clone();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await?;
        Ok(RuntimeServiceClient::new(channel))
    }

    pub fn sandbox_config(&self, name: &str, ports: Vec<PortMapping>) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            port_mappings: ports,
            log_directory: self.dir.join("logs").join(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox; return (sandbox id, pod IPv6 address, netns path).
    pub fn run_pod(&self, name: &str) -> (String, Ipv6Addr, String) {
        self.run_pod_with_ports(name, Vec::new())
    }

    /// RunPodSandbox with `port_mappings` (hostPorts); return (sandbox id,
    /// pod IPv6 address, netns path).
    pub fn run_pod_with_ports(
        &self,
        name: &str,
        ports: Vec<PortMapping>,
    ) -> (String, Ipv6Addr, String) {
        let (id, ips, netns) = self.run_pod_ips(name, ports);
        let ip = ips
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .unwrap_or_else(|| panic!("pod {name} has no IPv6 address: {ips:?}"));
        (id, ip, netns)
    }

    /// RunPodSandbox; return (sandbox id, every pod IP the CRI reports,
    /// the primary first, netns path).
    pub fn run_pod_ips(
        &self,
        name: &str,
        ports: Vec<PortMapping>,
    ) -> (String, Vec<IpAddr>, String) {
        let config = self.sandbox_config(name, ports);
        self.tokio.block_on(async {
            let mut c = self.client().await.expect("connect CRI");
            let id = c
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"))
                .into_inner()
                .pod_sandbox_id;
            let status = c
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: true,
                })
                .await
                .expect("PodSandboxStatus")
                .into_inner();
            let network = status
                .status
                .as_ref()
                .and_then(|s| s.network.as_ref())
                .expect("pod has an IP");
            let ips: Vec<IpAddr> = std::iter::once(network.ip.as_str())
                .chain(network.additional_ips.iter().map(|a| a.ip.as_str()))
                .map(|a| a.parse().expect("pod IP is an address"))
                .collect();
            let info: serde_json::Value =
                serde_json::from_str(status.info.get("info").expect("verbose info")).unwrap();
            let netns = info["runtimeSpec"]["linux"]["namespaces"]
                .as_array()
                .and_then(|ns| ns.iter().find(|n| n["type"] == "network"))
                .and_then(|n| n["path"].as_str())
                .expect("netns path")
                .to_owned();
            (id, ips, netns)
        })
    }

    /// StopPodSandbox then RemovePodSandbox, as kubelet does.
    pub fn remove_pod(&self, id: &str) {
        self.tokio.block_on(async {
            let mut c = self.client().await.expect("connect CRI");
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}"));
            c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}"));
        })
    }

    /// SIGKILL containerd (shims and pods live on), then start it again.
    pub fn kill_and_restart(&self) {
        let node = self.lab.node(&self.node);
        let pid = node.pid(self.proc).expect("containerd running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        node.restart(self.proc).expect("restart containerd");
        self.wait_ready();
    }
}

impl Drop for Runtime<'_> {
    fn drop(&mut self) {
        let _ = self.lab.node(&self.node).kill(self.proc);
        // Shims (setsid, so outside the lab's process group) name our
        // socket on their command line; pause processes are their children.
        let needle = self.dir.to_string_lossy().into_owned();
        let procs: Vec<(i32, i32, String)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((pid, ppid, String::from_utf8_lossy(&cmdline).into_owned()))
            })
            .collect();
        let ours: Vec<i32> = procs
            .iter()
            .filter(|p| p.2.contains(&needle))
            .map(|p| p.0)
            .collect();
        let children: Vec<i32> = procs
            .iter()
            .filter(|p| ours.contains(&p.1))
            .map(|p| p.0)
            .collect();
        for pid in ours.iter().chain(&children) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Mounts under our dir (rootfs, netns, shm), deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(needle.as_str()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
        // cgroups runc made below our parent, in every v1 hierarchy (or v2).
        let parent = self.cgroup_parent.trim_start_matches('/');
        if let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hier.flatten() {
                remove_cgroup(&h.path().join(parent), 0);
            }
        }
        remove_cgroup(&Path::new("/sys/fs/cgroup").join(parent), 0);
    }
}

/// Remove a cgroup directory tree bottom-up (bounded depth).
fn remove_cgroup(dir: &Path, depth: usize) {
    if depth > 8 || !dir.is_dir() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path(), depth + 1);
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Ping `dst` (either family) from inside the network namespace at `netns`.
pub fn ping_from(netns: &str, dst: impl Into<IpAddr>) -> bool {
    let dst = dst.into();
    let family = if dst.is_ipv4() { "-4" } else { "-6" };
    Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "ping", family, "-c", "1", "-W", "2"])
        .arg(dst.to_string())
        .output()
        .is_ok_and(|o| o.status.success())
}
