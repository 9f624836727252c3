//! `virtctl ssh` and `virtctl scp` as argument vectors for the local OpenSSH client (pure): the
//! connection goes through `virtctl port-forward --stdio=true` as the ssh ProxyCommand, so it
//! works wherever the API server is reachable, with no route to the VM's network.

use crate::Error;
use crate::target::{Target, parse_user_target};

/// What the ProxyCommand needs to reach the API server as this invocation does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyContext {
    /// Absolute path of this binary.
    pub program: String,
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
}

/// The ssh/scp options shared by both verbs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub username: Option<String>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub port: u16,
    pub local_ssh_opts: Vec<String>,
}

/// Quotes one word for the shell ssh runs the ProxyCommand with.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `ProxyCommand=<virtctl> port-forward --stdio=true <kind>/<name>/<ns> <port>`.
pub fn proxy_command(ctx: &ProxyContext, target: &Target, namespace: &str, port: u16) -> String {
    let mut words = vec![shell_quote(&ctx.program)];
    if let Some(k) = &ctx.kubeconfig {
        words.push(format!("--kubeconfig={}", shell_quote(k)));
    }
    if let Some(c) = &ctx.context {
        words.push(format!("--context={}", shell_quote(c)));
    }
    words.push("port-forward".into());
    words.push("--stdio=true".into());
    words.push(shell_quote(&format!(
        "{}/{}/{namespace}",
        target.kind.short(),
        target.name
    )));
    words.push(port.to_string());
    format!("ProxyCommand={}", words.join(" "))
}

/// The host name ssh sees (`kind.name.namespace`): only a label for known_hosts, since the
/// ProxyCommand does the connecting.
fn host(target: &Target, namespace: &str) -> String {
    format!("{}.{}.{namespace}", target.kind.short(), target.name)
}

fn common(ctx: &ProxyContext, target: &Target, namespace: &str, o: &Options) -> Vec<String> {
    let mut args = vec![
        "-o".to_string(),
        proxy_command(ctx, target, namespace, o.port),
    ];
    if let Some(k) = &o.known_hosts {
        args.push("-o".into());
        args.push(format!("UserKnownHostsFile={k}"));
    }
    args.extend(o.local_ssh_opts.iter().cloned());
    if let Some(i) = &o.identity_file {
        args.push("-i".into());
        args.push(i.clone());
    }
    args
}

/// `ssh [user@]type/name[/ns] [-c command]` → the arguments of `ssh`.
pub fn ssh_args(
    ctx: &ProxyContext,
    destination: &str,
    fallback_namespace: &str,
    o: &Options,
    command: Option<&str>,
) -> Result<Vec<String>, Error> {
    let (user, target) = parse_user_target(destination)?;
    let namespace = target.namespace_or(fallback_namespace).to_string();
    let mut args = common(ctx, &target, &namespace, o);
    let user = user.or_else(|| o.username.clone());
    let mut dest = String::new();
    if let Some(u) = user {
        dest.push_str(&u);
        dest.push('@');
    }
    dest.push_str(&host(&target, &namespace));
    args.push(dest);
    if let Some(c) = command {
        args.push(c.to_string());
    }
    Ok(args)
}

/// One side of an scp copy: `[user@]type/name[/ns]:path` is remote, anything else local.
fn remote_side(arg: &str) -> Result<Option<(Option<String>, Target, String)>, Error> {
    // A local path can hold ':' too; only a parseable target before the first ':' is remote.
    let Some((target, path)) = arg.split_once(':') else {
        return Ok(None);
    };
    match parse_user_target(target) {
        Ok((user, t)) => Ok(Some((user, t, path.to_string()))),
        Err(_) if !target.contains('/') => Ok(None),
        Err(e) => Err(e),
    }
}

/// `scp SRC DST` with exactly one side remote → the arguments of `scp`.
pub fn scp_args(
    ctx: &ProxyContext,
    source: &str,
    destination: &str,
    fallback_namespace: &str,
    o: &Options,
    recursive: bool,
    preserve: bool,
) -> Result<Vec<String>, Error> {
    let src = remote_side(source)?;
    let dst = remote_side(destination)?;
    let (remote, to_remote) = match (src, dst) {
        (Some(r), None) => (r, false),
        (None, Some(r)) => (r, true),
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "copying from a remote location to another remote location is not supported".into(),
            ));
        }
        (None, None) => {
            return Err(Error::Usage(
                "none of the two provided locations seems to be a remote location: [user@]type/name[/namespace]:path".into(),
            ));
        }
    };
    let (user, target, path) = remote;
    let namespace = target.namespace_or(fallback_namespace).to_string();
    let mut args = common(ctx, &target, &namespace, o);
    if recursive {
        args.push("-r".into());
    }
    if preserve {
        args.push("-p".into());
    }
    // scp's port flag is -P; the port goes to the ProxyCommand instead, so none here.
    let mut remote_arg = String::new();
    if let Some(u) = user.or_else(|| o.username.clone()) {
        remote_arg.push_str(&u);
        remote_arg.push('@');
    }
    remote_arg.push_str(&host(&target, &namespace));
    remote_arg.push(':');
    remote_arg.push_str(&path);
    if to_remote {
        args.push(source.to_string());
        args.push(remote_arg);
    } else {
        args.push(remote_arg);
        args.push(destination.to_string());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ProxyContext {
        ProxyContext {
            program: "/usr/bin/virtctl".into(),
            kubeconfig: Some("/tmp/my kube".into()),
            context: None,
        }
    }

    fn opts() -> Options {
        Options {
            port: 22,
            ..Default::default()
        }
    }

    #[test]
    fn ssh() {
        let a = ssh_args(&ctx(), "root@vm/testvm", "default", &opts(), None).expect("ok");
        assert_eq!(
            a,
            vec![
                "-o",
                "ProxyCommand=/usr/bin/virtctl --kubeconfig='/tmp/my kube' port-forward --stdio=true vm/testvm/default 22",
                "root@vm.testvm.default",
            ]
        );
        let o = Options {
            username: Some("cirros".into()),
            identity_file: Some("/k".into()),
            port: 2222,
            local_ssh_opts: vec!["-o".into(), "StrictHostKeyChecking=no".into()],
            known_hosts: None,
        };
        let a = ssh_args(&ctx(), "vmi/x/ns2", "default", &o, Some("ls /")).expect("ok");
        assert_eq!(
            a,
            vec![
                "-o",
                "ProxyCommand=/usr/bin/virtctl --kubeconfig='/tmp/my kube' port-forward --stdio=true vmi/x/ns2 2222",
                "-o",
                "StrictHostKeyChecking=no",
                "-i",
                "/k",
                "cirros@vmi.x.ns2",
                "ls /",
            ]
        );
        assert!(ssh_args(&ctx(), "testvm", "default", &opts(), None).is_err());
    }

    #[test]
    fn scp() {
        let a = scp_args(
            &ctx(),
            "file.txt",
            "root@vmi/v:/tmp/",
            "ns",
            &opts(),
            true,
            false,
        )
        .expect("ok");
        assert_eq!(a[2..], ["-r", "file.txt", "root@vmi.v.ns:/tmp/"]);
        let a = scp_args(
            &ctx(),
            "vm/v/other:/etc/hostname",
            "./out",
            "ns",
            &opts(),
            false,
            true,
        )
        .expect("ok");
        assert_eq!(a[2..], ["-p", "vm.v.other:/etc/hostname", "./out"]);
        assert!(a[1].contains("vm/v/other 22"));
        assert!(scp_args(&ctx(), "a", "b", "ns", &opts(), false, false).is_err());
        assert!(scp_args(&ctx(), "vm/a:x", "vm/b:y", "ns", &opts(), false, false).is_err());
        assert!(scp_args(&ctx(), "pod/a:x", "y", "ns", &opts(), false, false).is_err());
    }
}
