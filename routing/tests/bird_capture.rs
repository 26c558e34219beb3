//! Capture the OSPFv3 packets BIRD 2 really sends and store them as fixtures.
//!
//! Not a test: run by hand when the fixtures need refreshing,
//!
//! ```text
//! cargo test -p routing --test bird_capture -- --ignored --nocapture
//! ```
//!
//! Two BIRDs (router ids 10.0.0.1 and 10.0.0.2) talk over a veth between two
//! namespaces the program makes, once as a point-to-point link, once as a
//! broadcast link (which adds a DR, a BDR and a Network-LSA), and once as a
//! point-to-point link in the IPv4 address family (RFC 5838, Instance ID 64). tcpdump on
//! one end records both directions; the OSPF payloads (without the IPv6
//! header) of a fixed selection of packets are written to
//! `tests/fixtures/bird/<kind>-<n>.bin`, with a `manifest.tsv` and a README
//! that say which packet each file is and how to verify its checksum.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::bird::{BirdConf, BirdFiles, LinkType, parse_neighbors};
use common::netns::{Netns, Procs, veth};

/// One captured OSPF packet.
#[derive(Debug, Clone)]
struct Captured {
    run: &'static str,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    data: Vec<u8>,
}

impl Captured {
    fn ospf_type(&self) -> u8 {
        self.data[1]
    }

    fn router_id(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.data[4], self.data[5], self.data[6], self.data[7])
    }

    /// Return the LS types of the LSAs in an LS Update.
    fn lsu_types(&self) -> Vec<u16> {
        let d = &self.data;
        let count = u32::from_be_bytes([d[16], d[17], d[18], d[19]]);
        let mut types = Vec::new();
        let mut off = 20;
        for _ in 0..count {
            if off + 20 > d.len() {
                break;
            }
            types.push(u16::from_be_bytes([d[off + 2], d[off + 3]]));
            let len = usize::from(u16::from_be_bytes([d[off + 18], d[off + 19]]));
            if len < 20 {
                break;
            }
            off += len;
        }
        types
    }

    /// Return the LS types of the LSA headers in a DD or LS Ack.
    fn header_types(&self) -> Vec<u16> {
        let start = match self.ospf_type() {
            2 => 28,
            5 => 16,
            _ => return Vec::new(),
        };
        self.data[start..]
            .chunks_exact(20)
            .map(|h| u16::from_be_bytes([h[2], h[3]]))
            .collect()
    }
}

/// LSA types we want an LS Update of, with their fixture names.
const LSA_KINDS: [(u16, &str); 8] = [
    (0x2001, "router"),
    (0x2002, "network"),
    (0x2003, "inter-area-prefix"),
    (0x2004, "inter-area-router"),
    (0x4005, "as-external"),
    (0x2007, "nssa"),
    (0x0008, "link"),
    (0x2009, "intra-area-prefix"),
];

/// Kinds every capture must yield.
const REQUIRED: [&str; 10] = [
    "hello",
    "dd-empty",
    "dd",
    "lsr",
    "lsack",
    "lsu-router",
    "lsu-network",
    "lsu-link",
    "lsu-intra-area-prefix",
    "lsu-as-external",
];

fn lsa_name(ls_type: u16) -> String {
    LSA_KINDS
        .iter()
        .find(|(t, _)| *t == ls_type)
        .map_or_else(|| format!("{ls_type:#06x}"), |(_, n)| (*n).to_owned())
}

/// A scratch directory removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "refreshes tests/fixtures/bird; needs root, BIRD 2 and tcpdump"]
fn capture_bird_fixtures() {
    let work = WorkDir(std::env::temp_dir().join(format!("kmcap-{}", std::process::id())));
    std::fs::create_dir_all(&work.0).expect("create work dir");
    let mut packets = capture_run("ptp", LinkType::PointToPoint, false, &work.0);
    packets.extend(capture_run(
        "broadcast",
        LinkType::Broadcast,
        false,
        &work.0,
    ));
    packets.extend(capture_run("ipv4", LinkType::PointToPoint, true, &work.0));
    let selected = select(&packets);
    let kinds: BTreeSet<&str> = selected.iter().map(|(k, _)| k.as_str()).collect();
    for required in REQUIRED {
        assert!(
            kinds.contains(required),
            "no {required} packet captured; got {kinds:?}"
        );
    }
    write_fixtures(&selected);
}

/// Run two BIRDs over one veth with `link` type, in the IPv4 address
/// family if `ipv4`, and return every OSPF packet.
fn capture_run(run: &'static str, link: LinkType, ipv4: bool, work: &Path) -> Vec<Captured> {
    let pid = std::process::id();
    let a = Netns::new(&format!("kmcap-{pid}-{run}-a"));
    let b = Netns::new(&format!("kmcap-{pid}-{run}-b"));
    veth(&a, "02:00:00:00:00:0a", &b, "02:00:00:00:00:0b", "eth0");
    if ipv4 {
        // BIRD's IPv4 instance puts its interface's IPv4 address into its
        // Link-LSAs (and takes next hops from the peer's).
        for (ns, id) in [(&a, 1), (&b, 2)] {
            ns.run(&[
                "ip",
                "addr",
                "add",
                &format!("198.19.255.{id}/24"),
                "dev",
                "eth0",
            ]);
        }
    }
    let mut procs = Procs::default();

    let pcap = work.join(format!("{run}.pcap"));
    let tcpdump_err = work.join(format!("{run}.tcpdump.err"));
    let mut cmd = a.cmd("tcpdump");
    // -U: write each packet at once; -Z root: keep the work dir writable.
    cmd.args(["-i", "eth0", "-U", "-n", "-Z", "root", "-w"])
        .arg(&pcap)
        .arg("ip6 proto 89")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tcpdump_err).expect("tcpdump log"));
    procs.spawn("tcpdump", cmd);
    wait_for("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&tcpdump_err).is_ok_and(|s| s.contains("listening on"))
    });

    let mut birds = Vec::new();
    for (ns, name, id) in [(&a, "a", 1), (&b, "b", 2)] {
        let files = BirdFiles::new(work, &format!("{run}-{name}"));
        let (stub, external) = if ipv4 {
            (format!("198.18.{id}.0/24"), format!("198.18.{id}0.0/23"))
        } else {
            (
                format!("2001:db8:{id}::/64"),
                format!("2001:db8:ee0{id}::/48"),
            )
        };
        let mut conf = BirdConf::ptp(Ipv4Addr::new(10, 0, 0, id), &["eth0"], &[&stub]);
        conf.interfaces[0].1 = link;
        conf.externals = vec![external];
        conf.ipv4 = ipv4;
        files.write_conf(&conf);
        let args = files.bird_args();
        let mut cmd = ns.cmd(&args[0]);
        cmd.args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        procs.spawn(&format!("bird-{name}"), cmd);
        birds.push((ns, files, conf));
    }

    wait_for("both BIRDs to reach Full", Duration::from_secs(30), || {
        birds.iter().all(|(ns, files, _)| {
            ns.try_run(
                &files
                    .birdc_args("show ospf neighbors")
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )
            .is_some_and(|out| parse_neighbors(&out).iter().any(|n| n.is_full()))
        })
    });
    // Delayed acks and Hellos that list the neighbour.
    std::thread::sleep(Duration::from_secs(3));

    // A new stub network on b alone: an LS Update with one LSA and its ack.
    let (ns, files, conf) = &mut birds[1];
    conf.stubnets.push(
        if ipv4 {
            "198.18.2.128/25"
        } else {
            "2001:db8:2:1::/64"
        }
        .to_owned(),
    );
    files.write_conf(conf);
    ns.run(
        &files
            .birdc_args("configure")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_secs(4));

    procs.interrupt("tcpdump");
    drop(procs);
    let bytes = std::fs::read(&pcap).expect("read pcap");
    parse_pcap(&bytes, run)
}

/// Poll `done` every 200 ms until it holds or `limit` passes (then panic).
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Return the OSPF payloads of a classic pcap file of Ethernet frames.
fn parse_pcap(bytes: &[u8], run: &'static str) -> Vec<Captured> {
    assert!(bytes.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => panic!("not a pcap file (magic {magic:#x})"),
    };
    let u32_at = |off: usize| {
        let b: [u8; 4] = bytes[off..off + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "pcap link type is not Ethernet");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let caplen = usize::try_from(u32_at(off + 8)).expect("caplen");
        let frame = &bytes[off + 16..(off + 16 + caplen).min(bytes.len())];
        off += 16 + caplen;
        // Ethernet, then IPv6 with OSPF as next header (BIRD adds no
        // extension headers).
        if frame.len() < 54 || frame[12..14] != [0x86, 0xdd] || frame[20] != 89 {
            continue;
        }
        let ip = &frame[14..];
        let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16 bytes"));
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
        let data = ip[40..]
            .get(..payload_len)
            .expect("truncated frame")
            .to_vec();
        let ospf_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        assert_eq!(
            ospf_len,
            data.len(),
            "OSPF length differs from IPv6 payload"
        );
        out.push(Captured {
            run,
            src,
            dst,
            data,
        });
    }
    out
}

/// Pick the fixtures: per run and sending router, the first and last Hello,
/// the first DD without and with LSA headers, the first LS Request and LS
/// Ack, and per LSA type the smallest LS Update carrying one. Identical
/// payloads are kept once per kind (an LS Update with a Router- and an
/// Intra-Area-Prefix-LSA may be both `lsu-router` and
/// `lsu-intra-area-prefix`, so that every kind has a file).
fn select(packets: &[Captured]) -> Vec<(String, Captured)> {
    let mut picked: Vec<(String, Captured)> = Vec::new();
    let mut groups: Vec<(&str, Ipv4Addr)> = Vec::new();
    for p in packets {
        if !groups.contains(&(p.run, p.router_id())) {
            groups.push((p.run, p.router_id()));
        }
    }
    groups.sort();
    // Runs in capture order, routers by id.
    groups.sort_by_key(|(run, _)| ["ptp", "broadcast", "ipv4"].iter().position(|r| r == run));
    for (run, rid) in groups {
        let mine: Vec<&Captured> = packets
            .iter()
            .filter(|p| p.run == run && p.router_id() == rid)
            .collect();
        let of_type = |t: u8| mine.iter().copied().filter(move |p| p.ospf_type() == t);
        let mut take = |kind: &str, p: Option<&Captured>| {
            if let Some(p) = p {
                picked.push((kind.to_owned(), p.clone()));
            }
        };
        take("hello", of_type(1).next());
        take("hello", of_type(1).next_back());
        take("dd-empty", of_type(2).find(|p| p.data.len() == 28));
        take("dd", of_type(2).find(|p| p.data.len() > 28));
        take("lsr", of_type(3).next());
        take("lsack", of_type(5).next());
        for (ls_type, name) in LSA_KINDS {
            let best = of_type(4)
                .filter(|p| p.lsu_types().contains(&ls_type))
                .min_by_key(|p| p.lsu_types().len());
            take(&format!("lsu-{name}"), best);
        }
    }
    let mut seen = BTreeSet::new();
    picked.retain(|(kind, p)| seen.insert((kind.clone(), p.data.clone())));
    picked
}

/// Replace the fixture directory's `.bin` files, manifest and README.
fn write_fixtures(selected: &[(String, Captured)]) {
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/bird");
    std::fs::create_dir_all(&dir).expect("create fixture dir");
    for entry in std::fs::read_dir(&dir).expect("read fixture dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "bin") {
            std::fs::remove_file(&path).expect("remove old fixture");
        }
    }
    let mut manifest = String::from("file\trun\tkind\trouter_id\tsrc\tdst\tlength\tlsa_types\n");
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (kind, p) in selected {
        let n = match counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((kind.clone(), 1));
                1
            }
        };
        let file = format!("{kind}-{n}.bin");
        std::fs::write(dir.join(&file), &p.data).expect("write fixture");
        let types = match p.ospf_type() {
            4 => p.lsu_types(),
            2 | 5 => p.header_types(),
            _ => Vec::new(),
        };
        let types: Vec<String> = types.into_iter().map(lsa_name).collect();
        let types = if types.is_empty() {
            "-".to_owned()
        } else {
            types.join(",")
        };
        let _ = writeln!(
            manifest,
            "{file}\t{}\t{kind}\t{}\t{}\t{}\t{}\t{types}",
            p.run,
            p.router_id(),
            p.src,
            p.dst,
            p.data.len()
        );
        let _ = writeln!(
            table,
            "| `{file}` | {} | {} | {} | {} | {} | {types} |",
            p.run,
            p.router_id(),
            p.src,
            p.dst,
            p.data.len()
        );
        println!(
            "{file}: {} bytes from {} ({})",
            p.data.len(),
            p.router_id(),
            p.run
        );
    }
    std::fs::write(dir.join("manifest.tsv"), manifest).expect("write manifest");
    std::fs::write(dir.join("README.md"), readme(&table)).expect("write README");
}

fn readme(table: &str) -> String {
    format!(
        r#"# OSPFv3 packets sent by BIRD 2

Every `.bin` file here is one OSPFv3 packet exactly as BIRD 2.0.12 put it
on the wire: the OSPF header and body, without the IPv6 header (what a raw
IPv6 socket for protocol 89 reads). This file, `manifest.tsv` and the `.bin`
files are written by `routing/tests/bird_capture.rs`:

```text
cargo test -p routing --test bird_capture -- --ignored --nocapture
```

## How they were captured

Two network namespaces made by the program, joined by a veth `eth0` with
fixed MACs `02:00:00:00:00:0a` / `02:00:00:00:00:0b`, so the link-local
addresses are always `fe80::ff:fe00:a` (router id 10.0.0.1) and
`fe80::ff:fe00:b` (router id 10.0.0.2). Each runs BIRD with

- `protocol ospf v3` in area 0 on `eth0` (hello 1, dead 3, cost 10),
  once with `type ptp` (run `ptp`), once with `type broadcast` (run
  `broadcast`, where 10.0.0.2 becomes DR and originates the Network-LSA),
  and once with `type ptp` and an `ipv4` channel (run `ipv4`: RFC 5838,
  Instance ID 64, the AF-bit; `eth0` holds `198.19.255.<id>/24`, which
  BIRD puts into its Link-LSA);
- `stubnet 2001:db8:<id>::/64` (`198.18.<id>.0/24` in run `ipv4`),
  announced in the Intra-Area-Prefix LSA;
- a blackhole static `2001:db8:ee0<id>::/48` (`198.18.<id>0.0/23`)
  exported as AS-external;
- after both reach Full, 10.0.0.2 is reconfigured with an extra
  `stubnet 2001:db8:2:1::/64` (`198.18.2.128/25`), which floods a new
  Intra-Area-Prefix LSA (and Router-LSA) on its own.

tcpdump on 10.0.0.1's end records both directions (`ip6 proto 89`). From
each run and sender the program keeps the first and last Hello, the first
DD without (`dd-empty`) and with (`dd`) LSA headers, the first LS Request
and LS Ack, and for each LSA type the smallest LS Update carrying one
(`lsu-<type>`, which may carry other LSAs too). Identical payloads are kept
once per kind, so one LS Update can be stored under two kinds; `n` counts
the files of one kind in that order (ptp, broadcast, ipv4; 10.0.0.1
before 10.0.0.2). The file names are normally the same on every capture; the
contents vary a little with timing (ages, and whether BIRD packs LSAs into
one update), so tests should read `manifest.tsv` rather than expect
particular bytes.

## Checksums

The OSPFv3 checksum (offset 12) covers an IPv6 pseudo-header (RFC 5340
A.3.1, RFC 8200 8.1): source, destination, upper-layer length and next
header 89. The `src` and `dst` of each packet are in the table below and in
`manifest.tsv`, so a test can verify it; Instance ID is 0 (64 in run
`ipv4`), no authentication trailer. Ages, sequence numbers and LSA checksums are
whatever BIRD had at capture time.

| file | run | sender | src | dst | bytes | LSA types (LSU: LSAs; DD/Ack: headers) |
|---|---|---|---|---|---|---|
{table}"#
    )
}
