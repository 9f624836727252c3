//! Kubelet admission: a pod bound to the node (by the scheduler, or directly through
//! `spec.nodeName`) runs only if its requests fit what the node's admitted pods leave of its
//! allocatable; otherwise it fails at once as upstream's kubelet rejects it
//! (`OutOfcpu`, `OutOfmemory`, `OutOfpods`, ...). Pure.

use kubevirt_embedded_scheduler::predicates::Resources;

/// Why a pod is rejected: (reason, message).
pub type Rejection = (String, String);

fn shown(resource: &str, milli: i128) -> i128 {
    // CPU in millicores as upstream prints it; everything else in whole units.
    if resource == "cpu" {
        milli
    } else {
        milli / 1000
    }
}

/// Admits `requests` next to the already admitted pods' requests, within `allocatable`
/// (which may hold `pods`, in thousandths like the rest).
pub fn admit<'a>(
    requests: &Resources,
    admitted: impl IntoIterator<Item = &'a Resources>,
    allocatable: &Resources,
) -> Result<(), Rejection> {
    let mut used = Resources::new();
    let mut pods: i128 = 0;
    for r in admitted {
        pods += 1;
        for (k, v) in r {
            *used.entry(k.clone()).or_default() += v;
        }
    }
    if let Some(cap) = allocatable.get("pods")
        && (pods + 1) * 1000 > *cap
    {
        return Err((
            "OutOfpods".into(),
            format!(
                "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: {pods}, capacity: {}",
                cap / 1000
            ),
        ));
    }
    for (name, want) in requests {
        if *want <= 0 || name == "pods" {
            continue;
        }
        let Some(cap) = allocatable.get(name) else {
            continue;
        };
        let u = used.get(name).copied().unwrap_or(0);
        if u + want > *cap {
            return Err((
                format!("OutOf{name}"),
                format!(
                    "Pod was rejected: Node didn't have enough resource: {name}, requested: {}, used: {}, capacity: {}",
                    shown(name, *want),
                    shown(name, u),
                    shown(name, *cap)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pairs: &[(&str, i128)]) -> Resources {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn fits_and_rejections() {
        let alloc = r(&[("cpu", 4000), ("memory", 8 << 30 << 10), ("pods", 3000)]);
        let a = r(&[("cpu", 3000)]);
        assert!(admit(&r(&[("cpu", 1000)]), [&a], &alloc).is_ok());
        let (reason, msg) = admit(&r(&[("cpu", 2000)]), [&a], &alloc).unwrap_err();
        assert_eq!(reason, "OutOfcpu");
        assert_eq!(
            msg,
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 3000, capacity: 4000"
        );
        let none = Resources::new();
        let (reason, _) = admit(&none, [&none, &none, &none], &alloc).unwrap_err();
        assert_eq!(reason, "OutOfpods");
        // Resources the node does not report are not checked (extended resources aside).
        assert!(admit(&r(&[("example.com/gpu", 1000)]), [], &alloc).is_ok());
    }
}
