//! Whether a device can take the frames XDP redirects to it, from the
//! kernel's `netdev` generic-netlink family (`NETDEV_CMD_DEV_GET`, its
//! `xdp-features`): a redirect into a device without `NDO_XMIT` is dropped
//! by the kernel while the program counts it as sent. Cheap onboard and
//! USB NICs often lack it, and a veth has it only while its peer runs XDP
//! or GRO, which can change at any time.
//!
//! The messages are built and read here by hand: a request of three
//! attributes, an answer of one, no crate in the tree speaks this family.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// `NETDEV_XDP_ACT_NDO_XMIT`: the device takes redirected frames.
pub const NDO_XMIT: u64 = 1 << 2;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLA_F_MASK: u16 = 0x3fff;

/// One request: netlink header, generic header, attributes.
fn request(family: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = vec![cmd, 1, 0, 0];
    for (ty, value) in attrs {
        let len = 4 + value.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&ty.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    msg.extend_from_slice(&body);
    msg
}

/// The attribute `want` of the first message in `answer`, or the error the
/// kernel answered with.
fn attribute(answer: &[u8], want: u16) -> io::Result<Vec<u8>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"));
    if answer.len() < 16 {
        return Err(bad("short answer"));
    }
    let len = u32::from_ne_bytes(answer[0..4].try_into().map_err(|_| bad("header"))?) as usize;
    let ty = u16::from_ne_bytes([answer[4], answer[5]]);
    let msg = answer.get(..len).ok_or_else(|| bad("truncated message"))?;
    if ty == NLMSG_ERROR {
        let code = msg
            .get(16..20)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated error"))?;
        return Err(io::Error::from_raw_os_error(-code));
    }
    let mut at = 20; // netlink header + generic header
    while at + 4 <= msg.len() {
        let alen = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let aty = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & NLA_F_MASK;
        if alen < 4 || at + alen > msg.len() {
            return Err(bad("bad attribute length"));
        }
        if aty == want {
            return Ok(msg[at + 4..at + alen].to_vec());
        }
        at += alen.next_multiple_of(4);
    }
    Err(bad("attribute missing"))
}

/// A generic-netlink socket that knows the `netdev` family's id.
pub struct NetdevQuery {
    socket: Socket,
    family: u16,
}

impl NetdevQuery {
    /// Open the socket in this thread's network namespace and look the
    /// family up (absent before Linux 6.3: an error then).
    pub fn open() -> io::Result<NetdevQuery> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut q = NetdevQuery { socket, family: 0 };
        let answer = q.ask(&request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
        ))?;
        let id = attribute(&answer, CTRL_ATTR_FAMILY_ID)?;
        q.family = u16::from_ne_bytes(
            id.get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "netlink: family id"))?,
        );
        Ok(q)
    }

    fn ask(&mut self, msg: &[u8]) -> io::Result<Vec<u8>> {
        self.socket.send(msg, 0)?;
        let (answer, _) = self.socket.recv_from_full()?;
        Ok(answer)
    }

    /// The XDP features (`NETDEV_XDP_ACT_*` bits) of device `ifindex`.
    pub fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        let answer = self.ask(&request(
            self.family,
            NETDEV_CMD_DEV_GET,
            &[(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
        ))?;
        let v = attribute(&answer, NETDEV_A_DEV_XDP_FEATURES)?;
        let bytes: [u8; 8] = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "netlink: xdp-features"))?;
        Ok(u64::from_ne_bytes(bytes))
    }

    /// Whether device `ifindex` takes redirected frames.
    pub fn takes_redirects(&mut self, ifindex: u32) -> io::Result<bool> {
        Ok(self.xdp_features(ifindex)? & NDO_XMIT != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_padded_and_answers_read() {
        let r = request(0x20, 1, &[(1, &7u32.to_ne_bytes()), (2, b"abc")]);
        assert_eq!(r.len(), 16 + 4 + 8 + 8);
        assert_eq!(
            u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize,
            r.len()
        );
        // The same layout read back as an answer.
        assert_eq!(attribute(&r, 2).unwrap(), b"abc".to_vec());
        assert_eq!(attribute(&r, 1).unwrap(), 7u32.to_ne_bytes().to_vec());
        assert!(attribute(&r, 9).is_err());
        assert!(attribute(&r[..10], 1).is_err());
        let mut err = r.clone();
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-19i32).to_ne_bytes());
        assert_eq!(attribute(&err, 1).unwrap_err().raw_os_error(), Some(19));
    }
}
