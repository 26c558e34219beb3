//! One question for the running kernel's BTF that aya 0.14 parses but does
//! not answer: the byte offset of a struct member. The conntrack check
//! reads `nf_conn.status`, whose place depends on how the kernel was
//! configured (lock debugging, zones), so it is looked up at load time.
//!
//! The format is the kernel's `Documentation/bpf/btf.rst`: a header, then
//! a type section of variable-length records, then a string section. Every
//! read is bounds-checked, so a truncated or foreign blob is an error.

/// Where the running kernel exposes its own BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Why a member offset could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF (magic {0:#06x})")]
    Magic(u16),
    #[error("BTF cut short at byte {0}")]
    Truncated(usize),
    #[error("BTF type kind {0} is unknown to this reader")]
    UnknownKind(u32),
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(String),
    #[error("struct {0} has no member {1}")]
    NoMember(String, String),
    #[error("{0}.{1} is a bit field")]
    BitField(String, String),
}

/// Little-endian reads at absolute offsets, each checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32, BtfError> {
        let bytes = self.0.get(at..at + 4).ok_or(BtfError::Truncated(at))?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    fn u16(&self, at: usize) -> Result<u16, BtfError> {
        let bytes = self.0.get(at..at + 2).ok_or(BtfError::Truncated(at))?;
        Ok(u16::from_le_bytes(bytes.try_into().expect("two bytes")))
    }

    /// The NUL-terminated string at `at`.
    fn str(&self, at: usize) -> Result<&[u8], BtfError> {
        let rest = self.0.get(at..).ok_or(BtfError::Truncated(at))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::Truncated(self.0.len()))?;
        Ok(&rest[..end])
    }
}

/// Return the byte offset of `member` in `struct strukt` as `btf` (raw,
/// little-endian BTF such as [`VMLINUX`]) describes it.
pub fn member_offset(btf: &[u8], strukt: &str, member: &str) -> Result<u32, BtfError> {
    let r = Reader(btf);
    let magic = r.u16(0)?;
    if magic != MAGIC {
        return Err(BtfError::Magic(magic));
    }
    let hdr_len = r.u32(4)? as usize;
    let (type_off, type_len) = (r.u32(8)? as usize, r.u32(12)? as usize);
    let (str_off, str_len) = (r.u32(16)? as usize, r.u32(20)? as usize);
    // Both sections as the header declares them must be there.
    for section_end in [hdr_len + type_off + type_len, hdr_len + str_off + str_len] {
        if section_end > btf.len() {
            return Err(BtfError::Truncated(btf.len()));
        }
    }
    let strings = hdr_len + str_off;
    let name = |off: u32| r.str(strings + off as usize);

    let mut at = hdr_len + type_off;
    let end = at + type_len;
    while at < end {
        let (name_off, info) = (r.u32(at)?, r.u32(at + 4)?);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        let body = at + 12;
        if kind == KIND_STRUCT && name(name_off)? == strukt.as_bytes() {
            for i in 0..vlen {
                let m = body + 12 * i;
                if name(r.u32(m)?)? != member.as_bytes() {
                    continue;
                }
                let raw = r.u32(m + 8)?;
                // With the kind flag the top byte is a bit field's width.
                let (bits, width) = match kind_flag {
                    true => (raw & 0x00ff_ffff, raw >> 24),
                    false => (raw, 0),
                };
                if width != 0 || bits % 8 != 0 {
                    return Err(BtfError::BitField(strukt.into(), member.into()));
                }
                return Ok(bits / 8);
            }
            return Err(BtfError::NoMember(strukt.into(), member.into()));
        }
        at = body + extra_len(kind, vlen)?;
    }
    Err(BtfError::NoStruct(strukt.into()))
}

/// Bytes that follow a type record of `kind` with `vlen` entries.
fn extra_len(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // INT, VAR, DECL_TAG
        1 | 14 | 17 => 4,
        // ARRAY
        3 => 12,
        // STRUCT, UNION, DATASEC, ENUM64
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM, FUNC_PROTO
        6 | 13 => 8 * vlen,
        other => return Err(BtfError::UnknownKind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: `int`, then `struct s { int a; int b; int c:4; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0c\0";
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        // [1] INT "int" size 4, encoding: 32 bits.
        push(&[1, 1 << 24, 4, 32]);
        // [2] STRUCT "s" size 12, kind flag set, three members.
        push(&[5, (1 << 31) | (KIND_STRUCT << 24) | 3, 12]);
        push(&[7, 1, 0]);
        push(&[9, 1, 32]);
        push(&[11, 1, (4 << 24) | 64]);
        let mut blob = Vec::new();
        blob.extend(MAGIC.to_le_bytes());
        blob.extend([1, 0]);
        for word in [24u32, 0, types.len() as u32, types.len() as u32] {
            blob.extend(word.to_le_bytes());
        }
        blob.extend((strings.len() as u32).to_le_bytes());
        blob.extend(types);
        blob.extend(strings);
        blob
    }

    #[test]
    fn finds_a_members_byte_offset() {
        assert_eq!(member_offset(&sample(), "s", "a"), Ok(0));
        assert_eq!(member_offset(&sample(), "s", "b"), Ok(4));
    }

    #[test]
    fn names_what_is_missing_or_unusable() {
        let blob = sample();
        assert_eq!(
            member_offset(&blob, "t", "a"),
            Err(BtfError::NoStruct("t".into()))
        );
        assert_eq!(
            member_offset(&blob, "s", "z"),
            Err(BtfError::NoMember("s".into(), "z".into()))
        );
        assert_eq!(
            member_offset(&blob, "s", "c"),
            Err(BtfError::BitField("s".into(), "c".into()))
        );
        assert_eq!(member_offset(&[0; 4], "s", "a"), Err(BtfError::Magic(0)));
        // Every cut of a good blob is an error, never a panic.
        for len in 0..blob.len() {
            assert!(
                member_offset(&blob[..len], "s", "b").is_err(),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn reads_the_running_kernels_nf_conn() {
        let Ok(vmlinux) = std::fs::read(VMLINUX) else {
            panic!("{VMLINUX} is unreadable: the kernel has no BTF");
        };
        let status = member_offset(&vmlinux, "nf_conn", "status").expect("nf_conn.status");
        let timeout = member_offset(&vmlinux, "nf_conn", "timeout").expect("nf_conn.timeout");
        // `status` follows the lock, timeout, zone and both tuple hashes.
        assert!(
            status > timeout && status.is_multiple_of(8),
            "status at {status}"
        );
    }
}
