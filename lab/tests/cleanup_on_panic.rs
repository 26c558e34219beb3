//! A test that panics half-way still leaves no namespace, process or bpffs
//! pin behind; its work dir (the logs) is kept for inspection.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use common::Footprint;
use lab::{Lab, Topology, Wire};

fn small() -> Topology {
    Topology::new()
        .node("a")
        .node("b")
        .node("x")
        .link("a", "b", Wire::Cable)
        .link("b", "x", Wire::Direct)
}

#[test]
fn cleanup_on_panic() {
    let seen: Mutex<Option<(Footprint, std::path::PathBuf)>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::build("panic", &small()).unwrap_or_else(|e| panic!("{e:#}"));
        let a = lab.node("a");
        let sleeper = a.spawn("sleeper", &["sleep", "600"]).unwrap();
        // A grandchild in the same process group, and a daemon that leaves it.
        let forker = a
            .spawn(
                "forker",
                &["sh", "-c", "sleep 600 & setsid sleep 601 & wait"],
            )
            .unwrap();
        let pin = a.bpffs_dir().join("counters");
        a.run(&[
            "bpftool",
            "map",
            "create",
            pin.to_str().unwrap(),
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "4",
            "name",
            "kmlab_t",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        std::fs::create_dir(a.bpffs_dir().join("sub")).unwrap();
        assert!(pin.exists());
        // Wait (bounded) for the forker's children to exist.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pids = Vec::new();
        while std::time::Instant::now() < deadline {
            pids = lab::netns::pids(a.netns())
                .into_iter()
                .map(|p| p as u32)
                .collect();
            if pids.len() >= 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(pids.len() >= 4, "sleep, sh and its two sleeps: {pids:?}");
        assert!(pids.contains(&a.pid(sleeper).unwrap()) && pids.contains(&a.pid(forker).unwrap()));
        *seen.lock().unwrap() = Some((Footprint::of(&lab, pids), lab.work_path()));
        panic!("deliberate panic with a live lab");
    }));
    assert!(result.is_err(), "the closure must have panicked");
    let (footprint, work) = seen.into_inner().unwrap().expect("lab was built");
    footprint.assert_gone();
    // Kept because the thread was panicking when the lab dropped.
    assert!(work.exists(), "work dir should be kept after a panic");
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn cleanup_in_panicking_thread() {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let lab = Lab::build("thread", &small()).unwrap_or_else(|e| panic!("{e:#}"));
        let id = lab.node("x").spawn("sleeper", &["sleep", "600"]).unwrap();
        let pid = lab.node("x").pid(id).unwrap();
        tx.send((Footprint::of(&lab, vec![pid]), lab.work_path()))
            .unwrap();
        panic!("deliberate panic holding the lab");
    });
    assert!(handle.join().is_err());
    let (footprint, work) = rx.recv().unwrap();
    footprint.assert_gone();
    let _ = std::fs::remove_dir_all(work);
}

#[test]
fn stale_leftovers_are_removed() {
    // A pid that surely is dead: a child we started and reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ns = format!("km{dead}x1-stale");
    let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/kmlab-{dead}x1-stale"));
    // A build makes sure bpffs is mounted.
    drop(Lab::build("stale", &Topology::new().node("s")).unwrap());
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &ns])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("n0")).unwrap();
    lab::cleanup_stale().unwrap();
    assert!(!lab::netns::exists(&ns), "stale namespace {ns} survived");
    assert!(!dir.exists(), "stale bpffs dir survived");
}
