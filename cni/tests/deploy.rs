//! `deploy/kubermesh.yaml` read back as Kubernetes API objects: the fields
//! that make the agent and the plugin work on a real node, and the conflist
//! in the ConfigMap parsed by the plugin's own configuration parser.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use serde::Deserialize;

struct Objects {
    daemon_set: DaemonSet,
    config_map: ConfigMap,
    service_account: ServiceAccount,
}

fn load() -> Objects {
    // Read at run time: a test binary built for another checkout sharing
    // the target directory must not read that checkout's manifest.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("../deploy/kubermesh.yaml"))
        .expect("read deploy/kubermesh.yaml");
    let (mut ds, mut cm, mut sa) = (None, None, None);
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).expect("YAML document");
        let kind = value["kind"]
            .as_str()
            .expect("every object has a kind")
            .to_owned();
        match kind.as_str() {
            "DaemonSet" => ds = Some(serde_yaml::from_value(value).expect("DaemonSet")),
            "ConfigMap" => cm = Some(serde_yaml::from_value(value).expect("ConfigMap")),
            "ServiceAccount" => sa = Some(serde_yaml::from_value(value).expect("ServiceAccount")),
            other => panic!("unexpected kind {other} in the manifest"),
        }
    }
    Objects {
        daemon_set: ds.expect("a DaemonSet"),
        config_map: cm.expect("a ConfigMap"),
        service_account: sa.expect("a ServiceAccount"),
    }
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod template spec")
}

/// Return mount path -> host path (or ConfigMap name) for a container.
fn mounts(spec: &PodSpec, c: &Container) -> BTreeMap<String, String> {
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    c.volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let v = volumes
                .iter()
                .find(|v| v.name == m.name)
                .unwrap_or_else(|| panic!("no volume {}", m.name));
            let source = v
                .host_path
                .as_ref()
                .map(|h| h.path.clone())
                .or_else(|| {
                    v.config_map
                        .as_ref()
                        .map(|c| format!("configmap:{}", c.name))
                })
                .unwrap_or_else(|| panic!("volume {} is neither hostPath nor ConfigMap", v.name));
            (m.mount_path.clone(), source)
        })
        .collect()
}

#[test]
fn daemon_set_runs_the_agent_on_the_host_network() {
    let o = load();
    let ds = &o.daemon_set;
    assert_eq!(ds.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = pod_spec(ds);
    assert_eq!(
        spec.host_network,
        Some(true),
        "the agent is the node's router"
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        o.service_account.metadata.name.as_deref()
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerates_all = spec
        .tolerations
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none());
    assert!(tolerates_all, "must run on every node whatever its taints");
    let selector = ds
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    let labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "selector must match the template"
    );

    let agent = spec
        .containers
        .iter()
        .find(|c| c.name == "agent")
        .expect("agent container");
    assert_eq!(
        agent.command.as_deref(),
        Some(&["meshfwd".to_owned(), "agent".to_owned()][..])
    );
    let caps = agent
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .expect("capabilities");
    for cap in ["NET_ADMIN", "NET_RAW", "BPF", "SYS_ADMIN"] {
        assert!(caps.iter().any(|c| c == cap), "agent lacks {cap}: {caps:?}");
    }
    assert_ne!(
        agent.security_context.as_ref().unwrap().privileged,
        Some(true),
        "capabilities, not privileged"
    );
    let m = mounts(spec, agent);
    assert_eq!(
        m.get("/sys/fs/bpf").map(String::as_str),
        Some("/sys/fs/bpf"),
        "{m:?}"
    );
    assert_eq!(
        m.get("/run/kubermesh").map(String::as_str),
        Some("/run/kubermesh"),
        "{m:?}"
    );
    assert_eq!(
        m.get("/var/lib/kubermesh").map(String::as_str),
        Some("/var/lib/kubermesh"),
        "{m:?}"
    );
    // OSPF is authenticated with the key the node was provisioned with.
    let args = agent.args.clone().unwrap_or_default();
    assert!(
        args.iter()
            .any(|a| a == "--auth-key-file=/etc/kubermesh/ospf-keys.toml"),
        "{args:?}"
    );
    assert_eq!(
        m.get("/etc/kubermesh/ospf-keys.toml").map(String::as_str),
        Some("/etc/kubermesh/ospf-keys.toml"),
        "{m:?}"
    );
    assert!(
        args.iter()
            .any(|a| a.starts_with("--auth-boot-count-file=/var/lib/kubermesh/")),
        "the boot count survives the pod: {args:?}"
    );
    // Dual-stack by default: the IPv4 range is one the agent accepts.
    let v4 = args
        .iter()
        .find_map(|a| a.strip_prefix("--ipv4-cluster-prefix="))
        .expect("the manifest runs IPv4 pods");
    let v4: ipnet::Ipv4Net = v4.parse().expect("an IPv4 prefix");
    assert!(v4.prefix_len() <= 24, "room for /24 pod prefixes: {v4}");
    let bpffs = agent
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.mount_path == "/sys/fs/bpf")
        .unwrap();
    assert!(
        bpffs.mount_propagation.is_some(),
        "pins made on the host must show in the container"
    );
}

#[test]
fn upgrades_are_graceful_restarts_one_node_at_a_time() {
    let o = load();
    let ds = &o.daemon_set;
    let strategy = ds
        .spec
        .as_ref()
        .unwrap()
        .update_strategy
        .clone()
        .expect("an update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rolling update settings");
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    // One node at a time: its neighbours help it restart.
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    // Never a second agent on a node (one bpffs, one socket, one router id).
    assert!(
        matches!(rolling.max_surge, None | Some(IntOrString::Int(0))),
        "{:?}",
        rolling.max_surge
    );
    let spec = pod_spec(ds);
    let agent = spec
        .containers
        .iter()
        .find(|c| c.name == "agent")
        .expect("the agent container");
    // SIGTERM goes to the agent itself (it is the command, no shell), and
    // there is time for its planned-restart stop.
    assert_eq!(
        agent.command.as_deref(),
        Some(&["meshfwd".to_string(), "agent".to_string()][..])
    );
    assert!(
        agent
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_none(),
        "SIGTERM is the signal; a preStop hook would only delay it"
    );
    assert!(spec.termination_grace_period_seconds.unwrap_or(30) >= 5);
}

#[test]
fn init_container_installs_plugin_and_conflist() {
    let o = load();
    let spec = pod_spec(&o.daemon_set);
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let install = init
        .iter()
        .find(|c| c.name == "install-cni")
        .expect("install-cni init container");
    let m = mounts(spec, install);
    assert_eq!(
        m.get("/host/opt/cni/bin").map(String::as_str),
        Some("/opt/cni/bin"),
        "{m:?}"
    );
    assert_eq!(
        m.get("/host/etc/cni/net.d").map(String::as_str),
        Some("/etc/cni/net.d"),
        "{m:?}"
    );
    assert_eq!(
        m.get("/etc/kubermesh").map(String::as_str),
        Some("configmap:kubermesh-cni"),
        "{m:?}"
    );
    let script = install.command.as_ref().expect("command").join(" ");
    assert!(script.contains("/host/opt/cni/bin/meshfwd-cni"), "{script}");
    assert!(
        script.contains("/host/etc/cni/net.d/10-kubermesh.conflist"),
        "{script}"
    );
}

#[test]
fn conflist_is_what_the_plugin_accepts() {
    let o = load();
    let data = o.config_map.data.as_ref().expect("ConfigMap data");
    let text = data
        .get("10-kubermesh.conflist")
        .expect("10-kubermesh.conflist");
    let list: serde_json::Value = serde_json::from_str(text).expect("conflist is JSON");
    assert_eq!(
        list["cniVersion"], "1.0.0",
        "containerd 1.6 and CRI-O < 1.30 speak up to 1.0.0"
    );
    assert!(
        list["cniVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "1.1.0"),
        "1.1-aware runtimes get GC and STATUS"
    );
    let plugins = list["plugins"].as_array().expect("plugins");
    let types: Vec<&str> = plugins.iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(
        types,
        ["meshfwd-cni", "portmap", "bandwidth"],
        "ours first, then hostPorts and shaping"
    );
    assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
    // Both take the bandwidth capability: a shaped pod leaves the fast path.
    for p in [&plugins[0], &plugins[2]] {
        assert_eq!(p["capabilities"]["bandwidth"], true, "{p}");
    }
    // The runtime hands each plugin its entry plus name and cniVersion.
    let mut conf = plugins[0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let parsed = cni::spec::NetConf::parse(conf.to_string().as_bytes())
        .expect("the plugin accepts its conflist");
    // The plugin reads the state file and store where the DaemonSet puts them.
    let spec = pod_spec(&o.daemon_set);
    let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
    let host_dirs: Vec<String> = mounts(spec, agent).into_values().collect();
    let under_mount = |p: &Path| host_dirs.iter().any(|d| p.starts_with(d));
    assert!(
        under_mount(&parsed.state_file),
        "{} is not shared with the agent",
        parsed.state_file.display()
    );
    assert!(
        under_mount(&parsed.data_dir),
        "{} is not on a host path",
        parsed.data_dir.display()
    );
}
