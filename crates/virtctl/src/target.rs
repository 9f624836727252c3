//! Parsing of the targets and port lists upstream's virtctl accepts (pure).

use crate::Error;

/// Which kind of object a verb acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vm,
    Vmi,
}

impl Kind {
    /// The resource (plural) in API paths.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Vm => "virtualmachines",
            Kind::Vmi => "virtualmachineinstances",
        }
    }

    /// The short spelling upstream uses in ssh host names and ProxyCommands.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Vmi => "vmi",
        }
    }

    /// Any of upstream's spellings, case-insensitively.
    pub fn parse(kind: &str) -> Result<Kind, Error> {
        match kind.to_ascii_lowercase().as_str() {
            "vm" | "vms" | "virtualmachine" | "virtualmachines" => Ok(Kind::Vm),
            "vmi" | "vmis" | "virtualmachineinstance" | "virtualmachineinstances" => Ok(Kind::Vmi),
            _ => Err(Error::Usage(format!("unsupported resource type '{kind}'"))),
        }
    }
}

/// `type/name[/namespace]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
    pub namespace: Option<String>,
}

impl Target {
    pub fn parse(target: &str) -> Result<Target, Error> {
        if target.is_empty() {
            return Err(Error::Usage("target cannot be empty".into()));
        }
        let parts: Vec<&str> = target.split('/').collect();
        let (kind, name, namespace) = match parts.as_slice() {
            [_] => {
                return Err(Error::Usage(
                    "target must contain type and name separated by '/'".into(),
                ));
            }
            [kind, name] => (*kind, *name, None),
            [kind, name, ns] => {
                if ns.is_empty() {
                    return Err(Error::Usage("namespace cannot be empty".into()));
                }
                (*kind, *name, Some(ns.to_string()))
            }
            _ => {
                return Err(Error::Usage(
                    "target is not valid with more than two '/'".into(),
                ));
            }
        };
        let kind = Kind::parse(kind)?;
        if name.is_empty() {
            return Err(Error::Usage("name cannot be empty".into()));
        }
        Ok(Target {
            kind,
            name: name.to_string(),
            namespace,
        })
    }

    /// The namespace, falling back to the kubeconfig's.
    pub fn namespace_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(fallback)
    }
}

/// `[user@]type/name[/namespace]`.
pub fn parse_user_target(arg: &str) -> Result<(Option<String>, Target), Error> {
    let (user, rest) = match arg.split_once('@') {
        Some(("", _)) => return Err(Error::Usage("expected username before '@'".into())),
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, arg),
    };
    if rest.is_empty() {
        return Err(Error::Usage("expected target after '@'".into()));
    }
    Ok((user, Target::parse(rest)?))
}

/// Transport of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `[protocol/]localPort[:targetPort]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedPort {
    pub protocol: Protocol,
    pub local: u16,
    pub remote: u16,
}

impl ForwardedPort {
    pub fn parse(arg: &str) -> Result<ForwardedPort, Error> {
        let (protocol, ports) = match arg.split_once('/') {
            Some((p, rest)) => (
                match p.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => return Err(Error::Usage(format!("unknown protocol '{other}'"))),
                },
                rest,
            ),
            None => (Protocol::Tcp, arg),
        };
        let mut fields = ports.split(':').filter(|f| !f.is_empty());
        let port = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| Error::Usage(format!("invalid port '{s}'")))
        };
        let Some(local) = fields.next() else {
            return Err(Error::Usage(
                "invalid port, missing local and/or remote port".into(),
            ));
        };
        let local = port(local)?;
        let remote = match fields.next() {
            Some(r) => port(r)?,
            None => local,
        };
        Ok(ForwardedPort {
            protocol,
            local,
            remote,
        })
    }
}

/// The subresource path of a VM or VMI in `subresources.kubevirt.io/v1`.
pub fn subresource_path(kind: Kind, namespace: &str, name: &str, sub: &str) -> String {
    format!(
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/{}/{name}/{sub}",
        kind.resource()
    )
}

/// Upstream's `portforward/{port}[/{protocol}]` subresource.
pub fn portforward_subresource(port: u16, protocol: Protocol) -> String {
    format!("portforward/{port}/{}", protocol.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("vmi/testvm/ns1").expect("parses");
        assert_eq!(t.kind, Kind::Vmi);
        assert_eq!(t.name, "testvm");
        assert_eq!(t.namespace.as_deref(), Some("ns1"));
        assert_eq!(
            Target::parse("VirtualMachines/x").expect("parses").kind,
            Kind::Vm
        );
        assert!(Target::parse("testvm").is_err());
        assert!(Target::parse("vm/x/").is_err());
        assert!(Target::parse("vm//ns").is_err());
        assert!(Target::parse("pod/x").is_err());
        assert!(Target::parse("vm/a/b/c").is_err());
        let (u, t) = parse_user_target("root@vm/testvm").expect("parses");
        assert_eq!(u.as_deref(), Some("root"));
        assert_eq!(t.name, "testvm");
        assert!(parse_user_target("@vm/x").is_err());
        assert!(parse_user_target("root@").is_err());
    }

    #[test]
    fn ports() {
        let p = ForwardedPort::parse("8080:80").expect("parses");
        assert_eq!((p.protocol, p.local, p.remote), (Protocol::Tcp, 8080, 80));
        let p = ForwardedPort::parse("udp/53").expect("parses");
        assert_eq!((p.protocol, p.local, p.remote), (Protocol::Udp, 53, 53));
        let p = ForwardedPort::parse(":22").expect("parses");
        assert_eq!((p.local, p.remote), (22, 22));
        assert!(ForwardedPort::parse("x").is_err());
        assert!(ForwardedPort::parse("sctp/1").is_err());
        assert!(ForwardedPort::parse("").is_err());
        assert_eq!(
            subresource_path(
                Kind::Vmi,
                "default",
                "t",
                &portforward_subresource(22, Protocol::Tcp)
            ),
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/t/portforward/22/tcp"
        );
    }
}
