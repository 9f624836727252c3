//! The DHCP server the launcher runs on the in-pod bridge, for one guest: it answers only the
//! guest's MAC, with one fixed lease (an infinite one, as upstream's), the gateway, the pod's DNS
//! settings, the hostname and the MTU. Replies are broadcast on the bridge (the guest has no
//! address to unicast to yet).

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Encodable, Name};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// Everything the guest is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    /// The server identifier (an address of the bridge).
    pub server: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub hostname: String,
    pub mtu: Option<u16>,
    pub ntp: Vec<Ipv4Addr>,
    /// Classless static routes (destination, prefix, gateway), for a router outside the subnet.
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Site-specific options 224-254, from the interface's dhcpOptions.
    pub private: Vec<(u8, Vec<u8>)>,
    pub tftp_server: Option<String>,
    pub boot_file: Option<String>,
}

pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    })
}

/// RFC 3442 encoding: prefix length, the significant octets of the destination, the router.
fn classless_routes(routes: &[(Ipv4Addr, u8, Ipv4Addr)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dst, prefix, gw) in routes {
        out.push(*prefix);
        let significant = usize::from(prefix.div_ceil(8));
        out.extend_from_slice(&dst.octets()[..significant]);
        out.extend_from_slice(&gw.octets());
    }
    out
}

/// The reply to a client message, or None when the message is not for us (another MAC, not a
/// request, a release).
pub fn reply(req: &Message, lease: &Lease) -> Option<Message> {
    if req.opcode() != Opcode::BootRequest || req.chaddr().get(..6) != Some(&lease.mac[..]) {
        return None;
    }
    let kind = req.opts().msg_type()?;
    let reply_type = match kind {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            // A client asking for another address (an old lease) is told no, and starts over.
            let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
                _ => None,
            };
            let asked = requested.or((!req.ciaddr().is_unspecified()).then(|| req.ciaddr()));
            if asked.is_some_and(|ip| ip != lease.ip) {
                MessageType::Nak
            } else {
                MessageType::Ack
            }
        }
        MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootReply)
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(req.chaddr());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(lease.server));
    if reply_type == MessageType::Nak {
        return Some(msg);
    }
    if kind != MessageType::Inform {
        msg.set_yiaddr(lease.ip);
        msg.set_siaddr(lease.server);
    } else {
        msg.set_ciaddr(req.ciaddr());
    }
    let opts = msg.opts_mut();
    if kind != MessageType::Inform {
        opts.insert(DhcpOption::AddressLeaseTime(u32::MAX));
    }
    opts.insert(DhcpOption::SubnetMask(mask(lease.prefix)));
    let bits = u32::from(lease.ip) | !u32::from(mask(lease.prefix));
    opts.insert(DhcpOption::BroadcastAddr(Ipv4Addr::from(bits)));
    if let Some(r) = lease.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if !lease.routes.is_empty() {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::ClasslessStaticRoute,
            classless_routes(&lease.routes),
        )));
    }
    if !lease.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(lease.dns.clone()));
    }
    if let Some(first) = lease.search.first() {
        opts.insert(DhcpOption::DomainName(first.clone()));
        let names: Vec<Name> = lease
            .search
            .iter()
            .filter_map(|s| Name::from_ascii(s).ok())
            .collect();
        if !names.is_empty() {
            opts.insert(DhcpOption::DomainSearch(names));
        }
    }
    if !lease.hostname.is_empty() {
        opts.insert(DhcpOption::Hostname(lease.hostname.clone()));
    }
    if let Some(mtu) = lease.mtu {
        opts.insert(DhcpOption::InterfaceMtu(mtu));
    }
    if !lease.ntp.is_empty() {
        opts.insert(DhcpOption::NtpServers(lease.ntp.clone()));
    }
    if let Some(t) = &lease.tftp_server {
        opts.insert(DhcpOption::TFTPServerName(t.clone().into_bytes()));
    }
    if let Some(b) = &lease.boot_file {
        opts.insert(DhcpOption::BootfileName(b.clone().into_bytes()));
    }
    for (code, data) in &lease.private {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(*code),
            data.clone(),
        )));
    }
    Some(msg)
}

/// A UDP socket on port 67 bound to `device`, allowed to broadcast.
pub fn bind(device: &str) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Broadcast, &true)?;
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(device),
    )?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, 67))?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// Serves the lease until the task is aborted.
pub async fn serve(socket: UdpSocket, device: String, lease: Lease) {
    let mut buf = vec![0u8; 1500];
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    loop {
        let n = match socket.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                warn!(device = %device, error = %e, "DHCP receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(req) = Message::from_bytes(&buf[..n]) else {
            debug!(device = %device, "ignoring a malformed DHCP packet");
            continue;
        };
        let Some(resp) = reply(&req, &lease) else {
            continue;
        };
        let Ok(bytes) = resp.to_vec() else { continue };
        match socket.send_to(&bytes, to).await {
            Ok(_) => info!(
                device = %device,
                request = ?req.opts().msg_type(),
                reply = ?resp.opts().msg_type(),
                ip = %lease.ip,
                "DHCP"
            ),
            Err(e) => warn!(device = %device, error = %e, "DHCP send failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            mac: [2, 0, 0, 0, 0, 1],
            ip: Ipv4Addr::new(10, 0, 2, 2),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 1)),
            server: Ipv4Addr::new(10, 0, 2, 1),
            dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            hostname: "vm1".into(),
            mtu: Some(1450),
            ntp: vec![],
            routes: vec![],
            private: vec![(240, b"private".to_vec())],
            tftp_server: None,
            boot_file: None,
        }
    }

    fn request(kind: MessageType, mac: [u8; 6]) -> Message {
        let mut m = Message::new(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    #[test]
    fn discover_gets_an_offer_with_everything_the_guest_needs() {
        let req = request(MessageType::Discover, [2, 0, 0, 0, 0, 1]);
        let resp = reply(&req, &lease()).expect("an offer");
        // Through the wire format and back, as the guest sees it.
        let resp = Message::from_bytes(&resp.to_vec().expect("encodes")).expect("decodes");
        assert_eq!(resp.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(resp.yiaddr(), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(resp.xid(), req.xid());
        let o = resp.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 1)]))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("vm1".into()))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
        assert!(
            matches!(o.get(OptionCode::DomainSearch), Some(DhcpOption::DomainSearch(n)) if n.len() == 2)
        );
        assert!(o.get(OptionCode::from(240)).is_some());
    }

    #[test]
    fn request_is_acked_or_nakked_and_strangers_are_ignored() {
        let mut req = request(MessageType::Request, [2, 0, 0, 0, 0, 1]);
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            reply(&req, &lease()).and_then(|r| r.opts().msg_type()),
            Some(MessageType::Ack)
        );
        let mut old = request(MessageType::Request, [2, 0, 0, 0, 0, 1]);
        old.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 9)));
        assert_eq!(
            reply(&old, &lease()).and_then(|r| r.opts().msg_type()),
            Some(MessageType::Nak)
        );
        assert!(
            reply(
                &request(MessageType::Discover, [2, 0, 0, 0, 0, 2]),
                &lease()
            )
            .is_none()
        );
        assert!(reply(&request(MessageType::Release, [2, 0, 0, 0, 0, 1]), &lease()).is_none());
    }

    #[test]
    fn classless_routes_use_significant_octets() {
        let r = classless_routes(&[
            (Ipv4Addr::new(10, 244, 1, 1), 32, Ipv4Addr::UNSPECIFIED),
            (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 244, 1, 1)),
        ]);
        assert_eq!(r, vec![32, 10, 244, 1, 1, 0, 0, 0, 0, 0, 10, 244, 1, 1]);
        assert_eq!(
            parse_mac("DE:AD:00:00:be:af"),
            Some([0xde, 0xad, 0, 0, 0xbe, 0xaf])
        );
        assert_eq!(parse_mac("de:ad"), None);
    }
}
